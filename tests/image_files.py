"""Small image lists for the data-layer and converter tests (written with OpenCV)."""
import cv2
import numpy as np


def id_image(index, size=(6, 7)):
    """A BGR image whose pixels encode ``index``: channel c is index + c, so decoded values name the image."""
    img = np.empty(size + (3,), np.uint8)
    for c in range(3):
        img[:, :, c] = index + c
    return img


def pattern_image(seed, size=(40, 48), channels=3):
    """A smooth random image (JPEG-friendly) with distinct left/right and top/bottom halves."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (5, 6, channels)).astype(np.uint8)
    img = cv2.resize(low, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return img if channels == 3 else img.reshape(size)


def write_images(folder, images, ext=".png"):
    """Write images as folder/img_XXX.ext; returns their paths (str)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / ("img_%03d%s" % (i, ext))
        assert cv2.imwrite(str(path), img)
        paths.append(str(path))
    return paths


def label_sets(n, num_classes, seed=0, max_labels=3):
    """Per image: a list of distinct class indices, 0..max_labels of them."""
    rng = np.random.default_rng(seed)
    return [sorted(int(c) for c in rng.choice(num_classes, size=int(rng.integers(0, max_labels + 1)), replace=False))
            for _ in range(n)]


def write_list(path, image_paths, labels):
    path.write_text("".join("%s %s\n" % (p, " ".join(str(c) for c in labs))
                            for p, labs in zip(image_paths, labels, strict=True)))
    return str(path)


def id_list(tmp_path, n=10, num_classes=5, seed=0):
    """n PNG id images with a list file; returns (list path, labels)."""
    paths = write_images(tmp_path / "ids", [id_image(i) for i in range(n)])
    labels = label_sets(n, num_classes, seed)
    return write_list(tmp_path / "ids.txt", paths, labels), labels


def decoded_ids(data):
    """The image index of each sample of an id-image batch (checks every pixel agrees)."""
    ids = data[:, 0].reshape(len(data), -1)
    assert (ids == ids[:, :1]).all(), "a sample mixes pixels of several images"
    for c in range(data.shape[1]):
        assert (data[:, c] == data[:, 0] + c).all()
    return [int(v) for v in ids[:, 0]]


def exif_rotated_jpeg(path, img, orientation=6):
    """Write ``img`` as a JPEG with an EXIF Orientation tag (6: the viewer turns it 90 degrees clockwise)."""
    import struct
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    app1 = b"Exif\x00\x00" + tiff
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]              # SOI, then cv2's JFIF APP0 segment
    path.write_bytes(data[:app0_end] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[app0_end:])
    return str(path)


def awkward_images(folder, size=(24, 32)):
    """Files a real data set has, all shown as ``size`` (H, W): colour JPEG and PNG, a grey JPEG, a 16-bit PNG,
    a PNG with alpha and an EXIF-rotated JPEG (stored W x H). Returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    colour = [pattern_image(s, size) for s in range(6)]
    paths = []
    for name, img in (("colour.jpg", colour[0]), ("colour.png", colour[1]),
                      ("grey.jpg", cv2.cvtColor(colour[2], cv2.COLOR_BGR2GRAY)),
                      ("deep16.png", colour[3].astype(np.uint16) * 257 + np.arange(w, dtype=np.uint16)[:, None]),
                      ("alpha.png", np.dstack([colour[4], np.linspace(0, 255, h * w).reshape(h, w).astype(np.uint8)]))):
        assert cv2.imwrite(str(folder / name), img)
        paths.append(str(folder / name))
    stored = cv2.rotate(colour[5], cv2.ROTATE_90_COUNTERCLOCKWISE)          # W x H; orientation 6 turns it back
    paths.append(exif_rotated_jpeg(folder / "exif_rotated.jpg", stored))
    assert cv2.imread(paths[-1]).shape == (h, w, 3)
    assert cv2.imread(paths[-1], cv2.IMREAD_UNCHANGED).shape == (w, h, 3)
    return paths
