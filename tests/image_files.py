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
