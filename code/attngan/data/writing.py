"""Writing a dataset in the COCO-like layout the loader reads (data/README.md):
``images/<key>.jpg``, ``text/<key>.txt``, ``{train,test}/filenames.pickle`` and, with
classes, ``{train,test}/class_info.pickle``. Shared by the generated shapes
(``synthetic.py``) and a user's own images (``make_dataset.py``).

A dataset is written into the sibling folder ``.<name>.partial`` and renamed into place at
the end (``write_into_place``), so a failure leaves nothing half-written and an earlier
dataset untouched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from PIL import Image

from attngan.data.pickles import save_pickle
from attngan.errors import OutputError, user_path

T = TypeVar("T")


def check_out_dir(out_dir: Path, overwrite: bool, own_entries: Collection[str]) -> None:
    """Refuse a non-empty ``out_dir`` unless ``overwrite``, and always one that holds
    entries outside ``own_entries`` (what the writing tool makes): never delete foreign
    files."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder")
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return
    if not overwrite:
        raise OutputError(f"{out_dir} exists and is not empty; pass --force to replace it (overwrite=True from Python)")
    foreign = sorted(entries - set(own_entries))
    if foreign:
        raise OutputError(
            f"refusing to replace {out_dir}: it holds files this tool does not write: " + ", ".join(foreign[:5])
        )


def write_into_place(out_dir: Path, write: Callable[[Path], T]) -> T:
    """``write(folder)`` into the empty sibling folder ``.<name>.partial``, then that folder
    replaces ``out_dir``; on any failure it is removed and ``out_dir`` is left as it was.
    Check ``out_dir`` with ``check_out_dir`` first."""
    partial = out_dir.parent / f".{out_dir.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with user_path(partial, "cannot make the folder", OutputError):
        partial.mkdir(parents=True)
    try:
        result = write(partial)
        with user_path(out_dir, "cannot write the folder", OutputError):
            if out_dir.exists():
                shutil.rmtree(out_dir)
            partial.rename(out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return result


def make_layout(root: Path) -> None:
    """The empty folders of the layout in the new dataset folder ``root``."""
    for sub in ("images", "text", "train", "test"):
        (root / sub).mkdir()


def save_image(image: Image.Image, root: Path, key: str) -> Path:
    """``root/images/<key>.jpg``: RGB JPEG at quality 95 without chroma subsampling (the
    colours of small objects stay sharp)."""
    path = root / "images" / f"{key}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95, subsampling=0)
    return path


def save_captions(root: Path, key: str, captions: Sequence[str]) -> Path:
    """``root/text/<key>.txt``: one caption a line, UTF-8."""
    path = root / "text" / f"{key}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(captions) + "\n", encoding="utf-8")
    return path


def save_split(root: Path, split: str, keys: Sequence[str], class_ids: Sequence[int] | None = None) -> None:
    """``root/<split>/filenames.pickle`` (the keys, in order) and, when given,
    ``class_info.pickle`` (one class id a key); protocol 2, as the original's."""
    save_pickle(list(keys), root / split / "filenames.pickle")
    if class_ids is not None:
        if len(class_ids) != len(keys):
            raise ValueError(f"{split}: {len(class_ids)} class ids for {len(keys)} keys")
        save_pickle([int(c) for c in class_ids], root / split / "class_info.pickle")


def save_examples(root: Path, captions: Sequence[str]) -> None:
    """``example_captions.txt`` and ``example_filenames.txt`` (which lists it): the
    captions that sampling draws when given none (B_VALIDATION False)."""
    (root / "example_captions.txt").write_text("\n".join(captions) + "\n", encoding="utf-8")
    (root / "example_filenames.txt").write_text("example_captions\n", encoding="utf-8")
