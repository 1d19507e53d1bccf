"""Captions: tokenisation, the vocabulary and ``captions.pickle``, as the original.

``captions.pickle`` = ``[train_captions, test_captions, ixtoword, wordtoix]`` (protocol 2):
captions are lists of word ids, id 0 is '<end>' (padding) and never inside a caption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nltk.tokenize import RegexpTokenizer

from attngan.data.pickles import load_pickle, save_pickle

from ..errors import DataError, user_path

log = logging.getLogger(__name__)

_TOKENIZER = RegexpTokenizer(r"\w+")
END_TOKEN = "<end>"


def _raw_tokens(caption: str) -> list[str]:
    return _TOKENIZER.tokenize(caption.replace("\ufffd\ufffd", " ").lower())


def _ascii_only(tokens: list[str]) -> list[str]:
    kept = (t.encode("ascii", "ignore").decode("ascii") for t in tokens)
    return [t for t in kept if t]


def tokenize(caption: str) -> list[str]:
    """The original's tokens: lowercase ``\\w+`` runs, each cut to its ASCII characters."""
    return _ascii_only(_raw_tokens(caption))


def _read_captions(path: Path, captions_per_image: int) -> list[list[str]]:
    if not path.is_file():
        raise DataError(f"caption file not found: {path}")
    # split('\n') as the original: str.splitlines() also splits on \x0b, \x1c, \u2028...,
    # which would change which lines count as captions.
    with user_path(path, "cannot read caption file"):
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    captions: list[list[str]] = []
    for line in lines:
        raw = _raw_tokens(line)
        if not raw:
            continue
        tokens = _ascii_only(raw)
        if not tokens:
            # Kept, as the original, so caption positions match the authors' pickle.
            log.warning("%s: caption %r has no ASCII word; kept as an empty caption", path, line)
        captions.append(tokens)
        if len(captions) == captions_per_image:
            break
    return captions


def load_captions(data_dir: str | Path, filenames: list[str], captions_per_image: int) -> list[list[str]]:
    """Tokenised captions of ``data_dir/text/<key>.txt``: ``captions_per_image`` per key, in order.

    Returns ``len(filenames) * captions_per_image`` token lists. An image with fewer
    captions is a ValueError (the original printed an error and went on, which shifts
    every later image's captions).
    """
    all_captions: list[list[str]] = []
    for key in filenames:
        path = Path(data_dir) / "text" / f"{key}.txt"
        captions = _read_captions(path, captions_per_image)
        if len(captions) < captions_per_image:
            raise DataError(
                f"{path}: {len(captions)} non-empty captions, CAPTIONS_PER_IMAGE needs {captions_per_image}"
            )
        all_captions.extend(captions)
    return all_captions


def build_vocabulary(
    train_captions: list[list[str]], test_captions: list[list[str]]
) -> tuple[list[list[int]], list[list[int]], dict[int, str], dict[str, int]]:
    """Word ids for every word of train + test: ``(train_ids, test_ids, ixtoword, wordtoix)``.

    Index 0 is '<end>'; words get 1, 2, ... in order of first occurrence. The original
    iterated a Python-2 dict, whose order is not reproducible, so a vocabulary rebuilt
    here numbers the words differently from the authors' ``captions.pickle``.
    """
    ixtoword: dict[int, str] = {0: END_TOKEN}
    wordtoix: dict[str, int] = {END_TOKEN: 0}
    for sentence in [*train_captions, *test_captions]:
        for word in sentence:
            if word not in wordtoix:
                wordtoix[word] = len(ixtoword)
                ixtoword[len(ixtoword)] = word
    train_ids = [[wordtoix[w] for w in s] for s in train_captions]
    test_ids = [[wordtoix[w] for w in s] for s in test_captions]
    return train_ids, test_ids, ixtoword, wordtoix


@dataclass
class TextData:
    """Both splits' keys and word-id captions (``captions_per_image`` per key) and the vocabulary."""

    train_names: list[str]
    test_names: list[str]
    train_captions: list[list[int]]
    test_captions: list[list[int]]
    ixtoword: dict[int, str]
    wordtoix: dict[str, int]

    @property
    def n_words(self) -> int:
        return len(self.ixtoword)


def _load_filenames(data_dir: Path) -> tuple[list[str], list[str]]:
    paths = [data_dir / split / "filenames.pickle" for split in ("train", "test")]
    if not any(p.is_file() for p in paths):
        raise DataError(
            f"neither {paths[0]} nor {paths[1]} exists; expected DATA_DIR/train/filenames.pickle "
            "and DATA_DIR/test/filenames.pickle (lists of image keys), see data/README.md"
        )
    # A missing split is an empty list, as the original.
    train, test = (_keys(p) if p.is_file() else [] for p in paths)
    log.info("filenames: %d train, %d test (%s)", len(train), len(test), data_dir)
    return train, test


def _keys(path: Path) -> list[str]:
    keys = load_pickle(path)
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise DataError(
            f"{path}: expected a list of image keys (strings), got {type(keys).__name__}"
            + (" with other items" if isinstance(keys, (list, tuple)) else "")
        )
    return list(keys)


def _check_pickle(x: object, path: Path, names: tuple[list[str], list[str]], captions_per_image: int) -> None:
    layout = "[train_captions, test_captions, ixtoword, wordtoix] (two lists of word-id lists, two dicts)"
    if not isinstance(x, (list, tuple)) or len(x) != 4:
        raise DataError(f"{path}: expected {layout}")
    if not (
        all(isinstance(c, (list, tuple)) for c in x[:2])
        and all(isinstance(d, dict) for d in x[2:])
        and all(isinstance(ids, (list, tuple)) for split in x[:2] for ids in split)
    ):
        raise DataError(f"{path}: expected {layout}, got other types; delete it to rebuild it from text/")
    for split, captions, keys in zip(("train", "test"), x[:2], names):
        if keys and len(captions) != len(keys) * captions_per_image:
            raise DataError(
                f"{path}: {len(captions)} {split} captions, but {len(keys)} {split} images x "
                f"CAPTIONS_PER_IMAGE {captions_per_image} = {len(keys) * captions_per_image}; "
                "wrong CAPTIONS_PER_IMAGE, or a stale captions.pickle (delete it to rebuild)"
            )


def load_text_data(data_dir: str | Path, captions_per_image: int) -> TextData:
    """Keys and captions of both splits: ``captions.pickle`` if present, else built and written.

    A split whose ``filenames.pickle`` is missing is empty (its count is not checked).
    """
    data_dir = Path(data_dir)
    train_names, test_names = _load_filenames(data_dir)
    path = data_dir / "captions.pickle"
    if path.is_file():
        x = load_pickle(path)
        _check_pickle(x, path, (train_names, test_names), captions_per_image)
        train_ids, test_ids, ixtoword, wordtoix = x
        log.info("loaded %s (%d words)", path, len(ixtoword))
    else:
        train_ids, test_ids, ixtoword, wordtoix = build_vocabulary(
            load_captions(data_dir, train_names, captions_per_image),
            load_captions(data_dir, test_names, captions_per_image),
        )
        save_pickle([train_ids, test_ids, ixtoword, wordtoix], path)
        log.info("built %s (%d words)", path, len(ixtoword))
    return TextData(train_names, test_names, train_ids, test_ids, ixtoword, wordtoix)


def pad_or_sample(
    ids: list[int] | np.ndarray, words_num: int, rng: np.random.Generator | np.random.RandomState | None = None
) -> tuple[np.ndarray, int]:
    """The original ``get_caption``: ids as int64 ``[words_num]`` and the length ``min(len, words_num)``.

    Shorter captions are padded with 0; longer ones keep ``words_num`` positions chosen at
    random (shuffle, first ``words_num``, sorted), in their order. ``rng`` None uses the
    global ``np.random``, as the original, so seeding numpy reproduces it.
    """
    rng = np.random if rng is None else rng
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(words_num, dtype=np.int64)
    if len(ids) <= words_num:
        out[: len(ids)] = ids
        return out, len(ids)
    positions = list(range(len(ids)))
    rng.shuffle(positions)
    out[:] = ids[np.sort(positions[:words_num])]
    return out, words_num
