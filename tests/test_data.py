"""Loading CIFAR-10: image-folder copies, subsets, and one-line errors for every bad data dir."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import grad_cam_experiment as gce
from conftest import write_image_folder


def load(data_dir, **overrides):
    cfg = gce.Config(data_dir=str(data_dir), download=False, **overrides)
    return gce.load_cifar10(cfg, torch.device("cpu"))


def test_image_folder_is_read_back_with_correct_labels_and_pixels(tmp_path):
    write_image_folder(tmp_path, {"train": 3, "test": 2})
    train, test, source = load(tmp_path)
    assert source == f"image folder {tmp_path}"
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8
    assert torch.equal(train.labels, torch.arange(10).repeat_interleave(3))
    assert torch.equal(test.labels, torch.arange(10).repeat_interleave(2))
    expected = np.array(Image.open(tmp_path / "train" / "frog" / "0001.png"))  # PNG: lossless
    assert torch.equal(train.images[6 * 3 + 1], torch.from_numpy(expected).permute(2, 0, 1))


def test_parent_of_the_extracted_folder_is_accepted(tmp_path):
    write_image_folder(tmp_path / "cifar10-jpeg", {"train": 1, "test": 1})
    train, _, source = load(tmp_path)
    assert source.endswith("cifar10-jpeg") and len(train.labels) == 10


def test_balanced_seeded_subsets(tmp_path):
    write_image_folder(tmp_path, {"train": 5, "test": 3})
    train, test, _ = load(tmp_path, train_subset=20, test_subset=10)
    assert torch.bincount(train.labels).tolist() == [2] * 10  # the flags take multiples of 10; the function more:
    labels = torch.arange(10).repeat_interleave(5)
    assert torch.bincount(labels[gce.balanced_subset(labels, 23, 0)]).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert torch.bincount(test.labels).tolist() == [1] * 10
    again, _, _ = load(tmp_path, train_subset=20, test_subset=10)
    assert torch.equal(train.images, again.images)
    other, _, _ = load(tmp_path, train_subset=20, test_subset=10, seed=1)
    assert not torch.equal(train.images, other.images)
    with pytest.raises(gce.UserError, match="needs 6 of class airplane, but the train split has only 5; lower --train-subset "):
        load(tmp_path, train_subset=60)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_data_dir_names_both_options(tmp_path, make):
    data_dir = tmp_path / "nothing-here"
    if make == "empty":
        data_dir.mkdir()
    with pytest.raises(gce.UserError) as error:
        load(data_dir)
    message = str(error.value)
    assert "\n" not in message and f"no CIFAR-10 found in {data_dir}" in message
    assert "download" in message and "--data-dir DIR" in message and "train/<class>" in message


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(gce.torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(gce.UserError, match=r"could not provide it \(<urlopen error \[Errno -3\].*--data-dir DIR"):
        gce.load_cifar10(gce.Config(data_dir=str(tmp_path)), torch.device("cpu"))


def test_corrupt_image_names_the_file(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    bad = tmp_path / "test" / "ship" / "0000.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(gce.UserError, match=f"cannot decode image {bad}"):
        load(tmp_path)


def test_wrong_size_wrong_classes_and_empty_class_are_clear_errors(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    Image.new("RGB", (64, 48)).save(tmp_path / "train" / "cat" / "big.png")
    with pytest.raises(gce.UserError, match="big.png is 64x48; CIFAR-10 images must be 32x32"):
        load(tmp_path)
    (tmp_path / "train" / "cat" / "big.png").unlink()
    for f in (tmp_path / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(gce.UserError, match=r"train/dog holds no images"):
        load(tmp_path)
    (tmp_path / "train" / "dog").rename(tmp_path / "train" / "puppy")
    with pytest.raises(gce.UserError, match=r"must hold exactly the 10 CIFAR-10 .*folder\(s\) puppy \(move or rename "
                                            r"them\); missing dog \(add or restore them\)$"):
        load(tmp_path)


def test_data_dir_that_is_a_file(tmp_path):
    archive = tmp_path / "cifar10-jpeg.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(gce.UserError, match="is a file, not a folder"):
        load(archive)


@pytest.mark.parametrize("bad", ["zero-byte", "broken symlink", "folder named like an image", "fifo"])
def test_unreadable_image_files_are_one_line(tmp_path, bad):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    path = tmp_path / "train" / "deer" / "x.jpg"
    if bad == "zero-byte":
        path.write_bytes(b"")
    elif bad == "broken symlink":
        path.symlink_to(tmp_path / "nowhere.jpg")
    elif bad == "fifo":  # reading it waited forever (fault round)
        os.mkfifo(path)
    else:
        path.mkdir()
    with pytest.raises(gce.UserError, match=f"{path}.*remove") as error:
        load(tmp_path)
    assert "\n" not in str(error.value)


def replace_with_link(folder, target):
    """The folder (and what it holds) replaced by a symbolic link to target."""
    for f in sorted(folder.rglob("*"), reverse=True):
        f.rmdir() if f.is_dir() else f.unlink()
    folder.rmdir()
    folder.symlink_to(target)


def test_a_class_folder_that_is_a_link_loop_is_named_not_missing(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    cat = tmp_path / "train" / "cat"
    replace_with_link(cat, tmp_path / "train" / "cat2")
    (tmp_path / "train" / "cat2").symlink_to(cat)
    with pytest.raises(gce.UserError, match="train holds symbolic link\\(s\\) that lead nowhere \\(dangling, or a "
                                            "loop\\): cat, cat2; fix or remove them"):
        load(tmp_path)


def test_train_without_test_names_the_missing_folder(tmp_path):
    write_image_folder(tmp_path / "cifar10-jpeg", {"train": 1})
    with pytest.raises(gce.UserError, match="cifar10-jpeg has train/ but no test/"):
        load(tmp_path)  # used to fall through to torchvision and a download attempt


def test_hidden_and_system_folders_are_ignored_and_case_does_not_matter(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "train" / "__MACOSX").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "train" / "cat" / "._0000.png").write_bytes(b"AppleDouble")  # macOS metadata, not an image
    (tmp_path / "test" / "cat").rename(tmp_path / "test" / "Cat")
    train, test, _ = load(tmp_path)
    assert len(train.labels) == 10 and test.labels.tolist() == list(range(10))


def test_a_folder_inside_a_class_folder_is_named_not_skipped(tmp_path):
    """Fault round 11: train/cat/more/ with two of cat's images was skipped without a word (ImageFolder reads it)."""
    write_image_folder(tmp_path, {"train": 2, "test": 1})
    (tmp_path / "train" / "cat" / "more").mkdir()
    (tmp_path / "train" / "cat" / ".ipynb_checkpoints").mkdir()  # hidden: still ignored
    with pytest.raises(gce.UserError, match="train/cat holds folder\\(s\\) more: images are read from the class folder "
                                            "itself, not below it; move their images up"):
        load(tmp_path)


def test_a_split_or_class_that_is_there_under_another_form_is_said_so(tmp_path):
    """Fault round 11: Train/ was 'no train/', a file named cat was 'missing cat'."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    (tmp_path / "test" / "cat").rename(tmp_path / "test" / "cat-images")
    (tmp_path / "test" / "cat").write_bytes(b"")
    with pytest.raises(gce.UserError, match="missing cat \\(add or restore them\\); cat is a file, not a folder"):
        load(tmp_path)
    (tmp_path / "train").rename(tmp_path / "Train")
    with pytest.raises(gce.UserError, match="has test/ but no train/ \\(Train/ differs only in letter case: rename it "
                                            "train/\\)"):
        load(tmp_path)


def test_a_data_dir_that_is_a_dangling_link_is_named(tmp_path):
    """Fault round 11: torchvision's 'File exists' for a --data-dir link whose target is gone."""
    (tmp_path / "data").symlink_to(tmp_path / "gone")
    with pytest.raises(gce.UserError, match=f"--data-dir {tmp_path / 'data'} is a symbolic link to {tmp_path / 'gone'}, "
                                            "which does not exist"):
        load(tmp_path / "data")
    assert (tmp_path / "data").is_symlink() and not (tmp_path / "gone").exists()  # nothing made or removed


def test_an_image_without_read_permission_says_how_to_read_it(tmp_path, monkeypatch):
    """Fault round 11: 'remove or replace it' for a file the user may only need to chmod (root reads anything, so the
    permission error is made by hand)."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    real = np.fromfile
    def refuse(path, *args, **kwargs):
        if gce.Path(path).name == "0000.png" and gce.Path(path).parent.name == "deer":
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)
    monkeypatch.setattr(np, "fromfile", refuse)
    with pytest.raises(gce.UserError, match="\\(Permission denied\\); give yourself read access \\(chmod u\\+r "):
        load(tmp_path)


def test_an_odd_class_folder_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    (tmp_path / "train" / "notes").mkdir()
    with pytest.raises(gce.UserError, match=r"train must hold exactly the 10 .*; unexpected folder\(s\) notes "):
        load(tmp_path)
    (tmp_path / "train" / "notes").rmdir()
    (tmp_path / "train" / "CAT").mkdir()  # cat and CAT: which one is meant?
    with pytest.raises(gce.UserError, match=r"unexpected folder\(s\) CAT, cat"):
        load(tmp_path)


def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch):
    from urllib.error import URLError

    def offline(root, **kwargs):  # what torchvision does: create the folder, then fail to download into it
        (gce.Path(root) / "cifar-10-python.tar.gz").parent.mkdir(parents=True, exist_ok=True)
        raise URLError("no network")

    monkeypatch.setattr(gce.torchvision.datasets, "CIFAR10", offline)
    typo = tmp_path / "dtaa"
    with pytest.raises(gce.UserError, match="torchvision could not provide it"):
        gce.load_cifar10(gce.Config(data_dir=str(typo / "cifar")), torch.device("cpu"))
    assert not typo.exists()  # every folder the download made, not only the last one

    def interrupted(root, **kwargs):
        gce.Path(root).mkdir(parents=True)
        raise KeyboardInterrupt
    monkeypatch.setattr(gce.torchvision.datasets, "CIFAR10", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gce.load_cifar10(gce.Config(data_dir=str(typo)), torch.device("cpu"))
    assert not typo.exists()
    kept = tmp_path / "mine"
    kept.mkdir()
    (kept / "notes.txt").write_text("user data")
    with pytest.raises(gce.UserError):
        gce.load_cifar10(gce.Config(data_dir=str(kept)), torch.device("cpu"))
    assert (kept / "notes.txt").read_text() == "user data"  # a folder the run did not create stays


def test_several_copies_below_the_data_dir_are_an_error_not_a_guess(tmp_path):
    write_image_folder(tmp_path / "a_copy", {"train": 1, "test": 1})
    write_image_folder(tmp_path / "b_copy", {"train": 1, "test": 1})
    with pytest.raises(gce.UserError, match="holds several image-folder copies \\(a_copy, b_copy\\)"):
        load(tmp_path)
    assert len(load(tmp_path / "b_copy")[0].labels) == 10


def test_a_complete_copy_wins_over_an_unrelated_half_one(tmp_path):
    write_image_folder(tmp_path / "cifar10-jpeg", {"train": 1, "test": 1})
    (tmp_path / "another-dataset" / "train").mkdir(parents=True)
    assert load(tmp_path)[2].endswith("cifar10-jpeg")


@pytest.mark.parametrize("download", [True, False])
def test_torchvisions_batches_folder_given_as_the_data_dir_names_the_folder_above(tmp_path, download):
    """Fault round 22: --data-dir .../cifar-10-batches-py said 'no CIFAR-10 found' and offered (or, with download on,
    tried) to download a second copy into cifar-10-batches-py/cifar-10-batches-py."""
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (batches / name).write_bytes(b"")
    with pytest.raises(gce.UserError) as error:
        gce.load_cifar10(gce.Config(data_dir=str(batches), download=download), torch.device("cpu"))
    assert str(error.value) == (f"--data-dir {batches} is torchvision's cifar-10-batches-py folder itself; pass the "
                                f"folder above it ({tmp_path}), which holds it")
    assert sorted(p.name for p in batches.iterdir()) == ["batches.meta", "data_batch_1", "test_batch"]


def test_a_split_given_as_the_data_dir_names_the_folder_above(tmp_path):
    """--data-dir pointing at train/ used to try a download and print a 400-character message about the internet."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    with pytest.raises(gce.UserError) as error:
        load(tmp_path / "train")
    assert str(error.value) == (f"--data-dir {tmp_path / 'train'} holds the class folders itself: it is one split "
                                f"(train/ or test/) of an image-folder copy; pass the folder above it ({tmp_path}), "
                                "which holds both")


def _unreadable(monkeypatch, *paths):
    """What an ordinary user meets on folders without read permission (root, who runs CI, reads everything): these
    folders fail os.access and refuse to be listed."""
    paths = {str(p) for p in paths}
    real_access, real_iterdir = os.access, gce.Path.iterdir
    monkeypatch.setattr(gce.os, "access", lambda p, mode, **kw: str(p) not in paths and real_access(p, mode, **kw))

    def iterdir(self):
        if str(self) in paths:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)
    monkeypatch.setattr(gce.Path, "iterdir", iterdir)


@pytest.mark.parametrize("folder", ["train", "train/cat"])
def test_an_unreadable_data_folder_is_named_with_the_data_flag(tmp_path, monkeypatch, folder):
    """Fault round 4: an unreadable train/ was reported as '.../train/train' (a path that does not exist) and both cases
    advised another --output-dir."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    _unreadable(monkeypatch, tmp_path / folder)
    with pytest.raises(gce.UserError) as error:
        load(tmp_path)
    assert str(error.value) == (f"cannot read {tmp_path / folder} in --data-dir {tmp_path} (permission denied); give "
                                f"yourself read access (chmod -R u+rX {tmp_path}) or pass another --data-dir")



@pytest.mark.parametrize("linked", ["test", "test/cat"])
def test_a_test_split_that_links_to_the_training_images_is_refused(tmp_path, linked):
    """Fault round 5: test -> train (a link) was accepted, and 'test accuracy' was read on the training images."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    target = tmp_path / "train" / linked.removeprefix("test").strip("/")
    replace_with_link(tmp_path / linked, target)
    with pytest.raises(gce.UserError, match=f"^{tmp_path}/train and {tmp_path}/test share folder\\(s\\) {target}"):
        load(tmp_path)


def test_a_data_dir_below_a_file_is_named(tmp_path):
    (tmp_path / "image.png").write_bytes(b"x")
    with pytest.raises(gce.UserError, match=f"^--data-dir {tmp_path}/image.png/x lies under {tmp_path}/image.png, "
                                            "which is a file, not a folder"):
        load(tmp_path / "image.png" / "x")



def test_two_class_folders_that_are_one_folder_are_refused(tmp_path):
    """Fault round 6: train/dog -> cat loaded the cat images under both labels, silently."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    replace_with_link(tmp_path / "train" / "dog", tmp_path / "train" / "cat")
    with pytest.raises(gce.UserError, match="are one folder \\(a link\\?\\): its images would carry two labels"):
        load(tmp_path)


@pytest.mark.parametrize("link", ["symbolic", "hard"])
def test_a_test_image_that_is_a_training_image_file_is_refused(tmp_path, link):
    """Fault round 6: test/ image files linked into train/ were accepted (only folders were compared)."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    train_file = next((tmp_path / "train" / "frog").iterdir())
    test_file = next((tmp_path / "test" / "frog").iterdir())
    test_file.unlink()
    test_file.symlink_to(train_file) if link == "symbolic" else test_file.hardlink_to(train_file)
    with pytest.raises(gce.UserError) as error:
        load(tmp_path)
    assert str(error.value) == (f"{test_file.relative_to(tmp_path)} and {train_file.relative_to(tmp_path)} in {tmp_path} "
                                "are one file (a link?): the test images would be training images; give test/ its own "
                                "images")


def test_a_test_split_that_copies_the_training_images_is_refused_and_a_few_copies_noted(tmp_path, capsys):
    """Rounds 13-15's borderline: test/ a byte copy of train/ (or re-encoded copies) was accepted: every test number
    would have been read on training images."""
    import shutil
    write_image_folder(tmp_path / "copy", {"train": 2})
    shutil.copytree(tmp_path / "copy" / "train", tmp_path / "copy" / "test")
    with pytest.raises(gce.UserError, match=r"^20 of the 20 test images are pixel for pixel training images \(image "
                                            r"folder .*\): the test accuracy .*\(is it a copy of train/\?\)$"):
        load(tmp_path / "copy")
    write_image_folder(tmp_path / "few", {"train": 2, "test": 2})  # 1 of 20 test images copied: below a tenth
    frog = tmp_path / "few" / "test" / "frog" / "0000.png"
    frog.write_bytes((tmp_path / "few" / "train" / "frog" / "0000.png").read_bytes())
    assert len(load(tmp_path / "few")[1].labels) == 20
    assert capsys.readouterr().out.startswith("note: 1 of the 20 test images are pixel for pixel training images")
    write_image_folder(tmp_path / "clean", {"train": 2, "test": 2})
    load(tmp_path / "clean")
    assert "note" not in capsys.readouterr().out


def test_one_image_file_under_two_classes_is_refused_and_a_copy_within_a_class_is_kept(tmp_path):
    write_image_folder(tmp_path, {"train": 2, "test": 1})
    cat, dog = (sorted((tmp_path / "train" / c).iterdir()) for c in ("cat", "dog"))
    cat[1].unlink()
    cat[1].hardlink_to(cat[0])  # the same file twice in one class: a duplicate, not a leak
    assert len(load(tmp_path)[0].labels) == 20
    dog[0].unlink()
    dog[0].hardlink_to(cat[0])
    with pytest.raises(gce.UserError, match="are one file \\(a link\\?\\): the image would carry two labels"):
        load(tmp_path)


def test_a_file_system_that_reuses_inode_numbers_is_not_taken_for_links(tmp_path, monkeypatch):
    """Some FUSE mounts (a notebook's cloud drive) give every file one inode number and one link: that is not a link
    between train/ and test/, and the data must load."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    real_stat = os.stat

    def one_inode(path, *args, **kwargs):
        fields = list(real_stat(path, *args, **kwargs))
        fields[1], fields[3] = 42, 1  # st_ino, st_nlink
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", one_inode)
    assert len(load(tmp_path)[1].labels) == 10


def test_every_format_torchvision_reads_is_read_and_other_image_files_are_named(tmp_path):
    """Fault round 12: valid .webp and .tif images beside the .png ones were skipped without a word (ImageFolder reads
    them); an image format the loader does not read is named, not skipped."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    rng, written = np.random.default_rng(1), []
    for name, options in [("0001.webp", dict(lossless=True)), ("0002.tif", {}), ("0003.PPM", {})]:
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "train" / "cat" / name, format=name.split(".")[1].upper()
                                     .replace("TIF", "TIFF"), **options)
        written.append(torch.from_numpy(pixels).permute(2, 0, 1))
    train, _, _ = load(tmp_path)
    cat = train.images[train.labels == 3]
    assert len(train.labels) == 13 and len(cat) == 4  # 0000.png, then the three in name order, pixel for pixel
    assert all(torch.equal(got, expected) for got, expected in zip(cat[1:], written))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "train" / "cat" / "0004.gif")
    with pytest.raises(gce.UserError, match=r"train/cat holds image\(s\) in a format this loader does not read: "
                                            r"0004\.gif; convert them to PNG or remove them \(it reads \.jpg, "):
        load(tmp_path)


def test_images_with_alpha_16_bit_or_float_pixels_read_as_torchvisions_pil_loader_reads_them(tmp_path):
    """Fault round 13: an RGBA TIFF came out with its colours premultiplied by its alpha (OpenCV's TIFF decoder), up to
    250 levels off what ImageFolder reads; 16-bit grey was scaled (>> 8) where PIL clips. Every non-JPEG format now goes
    through PIL's convert("RGB"), pixel for pixel; a float TIFF decodes without a stray OpenCV warning line."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    rng, cat = np.random.default_rng(2), tmp_path / "train" / "cat"
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "RGBA").save(cat / "0001.tif")
    Image.fromarray(rng.integers(0, 256, (32, 32, 2), dtype=np.uint8), "LA").save(cat / "0002.png")
    Image.fromarray(rng.integers(0, 65536, (32, 32)).astype(np.uint16)).save(cat / "0003.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "RGBA").save(cat / "0004.webp", lossless=True)
    Image.fromarray(rng.uniform(0, 300, (32, 32)).astype(np.float32)).save(cat / "0005.tif")
    expected = [np.asarray(Image.open(cat / f"000{k}.{ext}").convert("RGB"))
                for k, ext in zip(range(1, 6), ["tif", "png", "png", "webp", "tif"])]
    train, _, _ = load(tmp_path)
    got = train.images[train.labels == 3][1:].permute(0, 2, 3, 1).numpy()
    assert len(got) == 5 and all(np.array_equal(g, e) for g, e in zip(got, expected))
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(cat / "0006.tif")
    with pytest.raises(gce.UserError, match=r"0006\.tif is 32x40; CIFAR-10 images must be 32x32"):
        load(tmp_path)
    (cat / "0006.tif").write_bytes((cat / "0001.tif").read_bytes()[:300])  # a truncated file
    with pytest.raises(gce.UserError, match=r"cannot decode image .*0006\.tif; remove or replace the file"):
        load(tmp_path)


@pytest.mark.parametrize("given, shown", [("data ", "'data '"), ("DATA", "'DATA'"),
                                          ("cafe\u0301", "'cafe\\u0301'")])  # NFD: prints as the NFC name
def test_a_data_dir_that_differs_from_a_folder_only_invisibly_is_named(tmp_path, given, shown):
    """Fault round 13: --data-dir 'data ' (or NFD 'café' beside NFC 'café') printed exactly like the folder that exists,
    in an error saying nothing was found there."""
    real = "caf\xe9" if given.startswith("cafe") else "data"
    write_image_folder(tmp_path / real, {"train": 1, "test": 1})
    with pytest.raises(gce.UserError) as error:
        load(tmp_path / given)
    assert str(error.value).startswith(f"--data-dir {shown} does not exist in {tmp_path}, but ")
    assert str(error.value).endswith(f"pass --data-dir {tmp_path / real}")
    assert not (tmp_path / given).exists()


def test_an_image_whose_name_ends_in_a_space_after_its_suffix_is_named(tmp_path):
    """Fault round 15: 'x.png ' was skipped without a word (as ImageFolder skips it), while a .gif is named."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    cat = tmp_path / "train" / "cat"
    (cat / "x.png ").write_bytes((cat / "0000.png").read_bytes())
    with pytest.raises(gce.UserError, match=r"train/cat holds image\(s\) whose name ends in a space or tab after the "
                                            r"suffix: 'x\.png '; rename them"):
        load(tmp_path)


def test_an_exif_orientation_tag_is_not_applied(tmp_path):
    """Fault round 12: OpenCV turned a JPEG whose EXIF tag says 'rotate 90 degrees' (a red band on top came out on the
    right); torchvision's PIL loader, like this one now, reads the stored pixels."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:4] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    (tmp_path / "train" / "cat" / "0000.png").unlink()
    Image.fromarray(pixels).save(tmp_path / "train" / "cat" / "0000.jpg", quality=100, exif=exif)
    stored = np.array(Image.open(tmp_path / "train" / "cat" / "0000.jpg").convert("RGB")).astype(int)
    train, _, _ = load(tmp_path)
    loaded = train.images[train.labels == 3][0].permute(1, 2, 0).numpy().astype(int)
    assert np.abs(loaded - stored).max() <= 2  # PIL's and OpenCV's JPEG decoders; rotated, 254 apart
    assert loaded[:2, :, 0].min() > 240 and loaded[8:, :, 0].max() < 40  # the band is still on top, nowhere else


def test_names_an_invisible_character_would_hide_are_quoted_and_a_newline_keeps_one_line(tmp_path, capsys):
    """Fault round 12: a class folder 'cat ' read "unexpected cat; missing cat"; a broken image named 'bad\\nname.png'
    split the one error line in two."""
    write_image_folder(tmp_path, {"train": 1, "test": 1})
    (tmp_path / "train" / "cat").rename(tmp_path / "train" / "cat ")
    with pytest.raises(gce.UserError, match=r"unexpected folder\(s\) 'cat ' \(move or rename them\); missing cat "):
        load(tmp_path)
    (tmp_path / "train" / "cat ").rename(tmp_path / "train" / "cat")
    (tmp_path / "train" / "cat" / "bad\nname.png").write_bytes(b"not an image")
    argv = ["--data-dir", str(tmp_path), "--quick", "--train-subset", "0", "--test-subset", "0", "--no-download",
            "--output-dir", str(tmp_path / "out")]
    assert gce.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cat/bad\\nname.png; remove or replace the file" in err, err
