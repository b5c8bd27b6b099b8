"""Tools around the layers: the numeric gradient checker, NetSpec / prototxt helpers and Caffe feature detection."""
