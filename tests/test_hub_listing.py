"""Parquet files discovered, not guessed (plugins/builtin/datasets/hfsource.py): each split's files are picked from
a listing of the repository, for the layouts found on the hub's ``refs/convert/parquet`` branch and main branches,
with split names matched exactly; the same picker serves a local copy (``path``); a split with no file is a
one-line error listing what the config does hold.

Nothing here touches the network: hub listings are mocked (``HfApi.list_repo_files``) and downloads are either
mocked or served from a ``huggingface_hub`` cache written in a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from w2s_harness.plugins.datasets import hfsource as H

from w2s_harness import DataError

#: Real layouts (abridged) of the repositories the recipes read, and of main branches.
SUPER_GLUE = [".gitattributes"] + [f"{c}/super_glue-{s}.parquet" for c in ("multirc", "wic", "boolq")
                                   for s in ("train", "validation", "test")]
ANLI = ["plain_text/train_r1/0000.parquet", "plain_text/train_r2/0000.parquet", "plain_text/train_r3/0000.parquet",
        "plain_text/dev_r2/0000.parquet", "plain_text/test_r2/0000.parquet", "plain_text/test/0000.parquet",
        "plain_text/train/0000.parquet", "plain_text/train/0001.parquet", "plain_text/train/0010.parquet"]
SHARDED = [f"default/cosmos_qa-train-0000{i}-of-00003.parquet" for i in (2, 0, 1)] + [
    "default/cosmos_qa-validation.parquet", "default/cosmos_qa-test.parquet"]
MAIN = ["README.md", "data/train-00000-of-00002-3f1e.parquet", "data/train-00001-of-00002-9a0c.parquet",
        "data/train_r2-00000-of-00001.parquet", "data/test-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet"]
GLUE_MAIN = ["cola/train-00000-of-00001.parquet", "cola/validation-00000-of-00001.parquet",
             "sst2/train-00000-of-00001.parquet", "mnli/validation_matched-00000-of-00001.parquet"]
SPLIT_DIRS = ["README.md", "train/0000.parquet", "train/0001.parquet", "test/0000.parquet",
              "train_r2/0000.parquet"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    for key in H.OFFLINE_VARS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.chdir(tmp_path)
    H._TABLES.clear()
    yield
    H._TABLES.clear()


# ---------------------------------------------------------------------------------------------- the picker


@pytest.mark.parametrize(("files", "config", "split", "want"), [
    (SUPER_GLUE, "multirc", "train", ["multirc/super_glue-train.parquet"]),
    (SUPER_GLUE, "wic", "validation", ["wic/super_glue-validation.parquet"]),
    (ANLI, None, "train_r2", ["plain_text/train_r2/0000.parquet"]),
    (ANLI, None, "test_r2", ["plain_text/test_r2/0000.parquet"]),
    (ANLI, None, "train", ["plain_text/train/0000.parquet", "plain_text/train/0001.parquet",
                           "plain_text/train/0010.parquet"]),
    (ANLI, None, "test", ["plain_text/test/0000.parquet"]),
    (SHARDED, None, "train", [f"default/cosmos_qa-train-0000{i}-of-00003.parquet" for i in range(3)]),
    (SHARDED, "default", "validation", ["default/cosmos_qa-validation.parquet"]),
    (MAIN, None, "train", ["data/train-00000-of-00002-3f1e.parquet", "data/train-00001-of-00002-9a0c.parquet"]),
    (MAIN, None, "train_r2", ["data/train_r2-00000-of-00001.parquet"]),
    (MAIN, "default", "test", ["data/test-00000-of-00001.parquet"]),  # no config folder: the data/ layout
    (GLUE_MAIN, "cola", "train", ["cola/train-00000-of-00001.parquet"]),
    (GLUE_MAIN, "mnli", "validation_matched", ["mnli/validation_matched-00000-of-00001.parquet"]),
    (SPLIT_DIRS, None, "train", ["train/0000.parquet", "train/0001.parquet"]),
    (SPLIT_DIRS, None, "test", ["test/0000.parquet"]),
    (["default/partial-train/0000.parquet", "default/partial-train/0001.parquet", "default/test/0000.parquet"],
     None, "train", ["default/partial-train/0000.parquet", "default/partial-train/0001.parquet"]),
    (["train.parquet", "test.parquet"], None, "train", ["train.parquet"]),
])
def test_pick_parquet_layouts(files, config, split, want):
    assert H.pick_parquet(files, config, split) == want


@pytest.mark.parametrize(("files", "config", "split"), [
    (SUPER_GLUE, "wic", "dev"),           # no such split
    (SUPER_GLUE, "cb", "train"),          # no such config folder
    (GLUE_MAIN, "mnli", "validation"),    # validation_matched is another split
    (["plain_text/train_r2/0000.parquet"], None, "train"),  # train must not pick train_r2
    (["data/test_r2-00000-of-00001.parquet"], None, "test"),
    (["default/train/0000.json"], None, "train"),  # parquet only
])
def test_pick_parquet_matches_split_names_exactly(files, config, split):
    assert H.pick_parquet(files, config, split) == []


def test_pick_parquet_prefers_default_and_refuses_to_guess_a_config():
    two = ["default/train/0000.parquet", "other/train/0000.parquet"]
    assert H.pick_parquet(two, None, "train") == ["default/train/0000.parquet"]
    assert H.pick_parquet(two, "other", "train") == ["other/train/0000.parquet"]
    with pytest.raises(H.AmbiguousConfig, match=r"several config folders \(boolq, multirc, wic\)"):
        H.pick_parquet(SUPER_GLUE, None, "train")


def test_no_file_for_a_split_is_one_line_listing_the_config():
    with pytest.raises(DataError) as e:
        H.pick_parquet_splits(SUPER_GLUE, "wic", ["train", "dev"], owner="wic", where="aps/super_glue",
                              hint="to use local files, set data_files")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == ("dataset 'wic': aps/super_glue has no parquet file for split 'dev' (files for config 'wic': "
                   "wic/super_glue-test.parquet, wic/super_glue-train.parquet, wic/super_glue-validation.parquet); "
                   "to use local files, set data_files")
    with pytest.raises(DataError, match=r"\(no folder 'cb/'; it has \.gitattributes, boolq/, multirc/, wic/\); fix"):
        H.pick_parquet_splits(SUPER_GLUE, "cb", ["train"], owner="cb", where="x", hint="fix")
    many = [f"default/train/{i:04d}.parquet" for i in range(12)]
    with pytest.raises(DataError, match=r"0007\.parquet, \.\.\. \(4 more\)\); fix$"):
        H.pick_parquet_splits(many, "default", ["test"], owner="o", where="x", hint="fix")
    with pytest.raises(DataError, match=r"^dataset 'o': x: split 'train' has parquet files in several config "
                                        r"folders \(boolq, multirc, wic\) and the dataset names no config; fix$"):
        H.pick_parquet_splits(SUPER_GLUE, None, ["train"], owner="o", where="x", hint="fix")
    assert H.pick_parquet_splits(many, None, ["train"], owner="o", where="x", hint="fix") == {"train": many}


# ------------------------------------------------------------------------------------------------- writers


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def rows(tag: str, n: int = 3) -> list[dict]:
    return [{"sentence": f"{tag}{i}", "label": i % 2} for i in range(n)]


def sentences(table) -> list[str]:
    return list(table["sentence"])


# ---------------------------------------------------------------------------------------- the hub, mocked


def test_hub_parquet_branch_lists_picks_and_loads_exact_files(monkeypatch, tmp_path):
    """aps/super_glue's layout: the listing (HfApi.list_repo_files, mocked) is read at the revision, and exactly
    the picked files are downloaded and loaded, in name order."""
    snapshot = tmp_path / "snapshot"
    write_parquet(snapshot / "wic" / "super_glue-train.parquet", rows("t"))
    write_parquet(snapshot / "wic" / "super_glue-validation.parquet", rows("v", 2))
    calls = {}

    def list_repo_files(self, repo_id, *, revision=None, repo_type=None, token=None):
        calls["list"] = (repo_id, repo_type, revision)
        return SUPER_GLUE

    def download(hub_id, revision, files, local_only):
        calls["download"] = (hub_id, revision, files, local_only)
        return str(snapshot)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", list_repo_files)
    monkeypatch.setattr(H, "download_hub_files", download)
    monkeypatch.setattr(H, "hub_reachable", lambda: True)
    tables = H.load_source("wic", data_files=None, path=None, hub_id="aps/super_glue", config="wic",
                           revision=H.PARQUET_BRANCH, splits=["train", "validation"], cache_dir=None, hint="h")
    assert calls["list"] == ("aps/super_glue", "dataset", H.PARQUET_BRANCH)
    assert calls["download"] == ("aps/super_glue", H.PARQUET_BRANCH,
                                 ["wic/super_glue-train.parquet", "wic/super_glue-validation.parquet"], False)
    assert sentences(tables["train"]) == ["t0", "t1", "t2"] and sentences(tables["validation"]) == ["v0", "v1"]


def test_hub_split_without_files_is_one_line_before_any_download(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_files", lambda self, *a, **k: ANLI)
    monkeypatch.setattr(H, "download_hub_files", lambda *a: pytest.fail("nothing is downloaded"))
    monkeypatch.setattr(H, "hub_reachable", lambda: True)
    with pytest.raises(DataError) as e:
        H.load_hub("facebook/anli", None, H.PARQUET_BRANCH, ["train_r2", "dev_r1"], "anli-r2", None,
                   "to use local files, set data_files = {...}")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("dataset 'anli-r2': facebook/anli at refs/convert/parquet has no parquet file for split "
                          "'dev_r1' (parquet files: plain_text/dev_r2/0000.parquet, ")
    assert msg.endswith("; to use local files, set data_files = {...}")


def test_hub_listing_error_is_one_line(monkeypatch):
    def listing(hub_id, revision, local_only):
        if local_only:  # nothing cached either
            raise FileNotFoundError("no cached tree")
        raise RuntimeError("404 Client Error\nRevision Not Found for url: ...")

    monkeypatch.setattr(H, "list_hub_files", listing)
    monkeypatch.setattr(H, "hub_reachable", lambda: True)
    with pytest.raises(DataError) as e:
        H.load_hub("org/none", None, H.PARQUET_BRANCH, ["train"], "x", None, "hint")
    assert str(e.value) == ("dataset 'x': cannot list the files of org/none at refs/convert/parquet: "
                            "RuntimeError: 404 Client Error; hint")


# ------------------------------------------------------------------------------- offline: the hub's cache


def _hub_cache(root: Path, repo: str, revision: str, files: dict[str, list[dict]], listed: list[str]) -> None:
    """A huggingface_hub cache as snapshot_download leaves it: refs/<revision>, the snapshot, the tree listing."""
    tree_cache = pytest.importorskip("huggingface_hub._tree_cache")
    folder = root / ("datasets--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs" / revision).parent.mkdir(parents=True, exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    for name, content in files.items():
        write_parquet(folder / "snapshots" / commit / name, content)
    tree_cache.write_tree_cache(str(folder), commit, {
        f: tree_cache.TreeCacheEntry(size=1, blob_id="0" * 40) for f in listed})


def test_offline_reads_the_listing_and_files_from_the_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub

    if not hasattr(huggingface_hub, "get_cached_repo_tree"):
        pytest.skip("huggingface_hub without a cached tree listing")
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    listed = ["default/train/0000.parquet", "default/train/0001.parquet", "default/train_r2/0000.parquet",
              "default/validation/0000.parquet"]
    _hub_cache(cache, "org/ds", H.PARQUET_BRANCH, {"default/train/0000.parquet": rows("a", 2),
                                                   "default/train/0001.parquet": rows("b", 1),
                                                   "default/validation/0000.parquet": rows("v", 1)}, listed)
    tables = H.load_hub("org/ds", None, H.PARQUET_BRANCH, ["train", "validation"], "ds", None, "hint")
    assert sentences(tables["train"]) == ["a0", "a1", "b0"] and sentences(tables["validation"]) == ["v0"]
    # a picked file missing from the snapshot (an interrupted download) is an error, not a shorter split
    (cache / "datasets--org--ds" / "snapshots" / "0123456789abcdef0123456789abcdef01234567" / "default" / "train"
     / "0001.parquet").unlink()
    H._TABLES.clear()
    with pytest.raises(DataError, match=r"^dataset 'ds': cannot download the parquet files of org/ds at "
                                        r"refs/convert/parquet: HF_HUB_OFFLINE is set and it is not in the "
                                        r"huggingface_hub cache; hint$"):
        H.load_hub("org/ds", None, H.PARQUET_BRANCH, ["train", "validation"], "ds", None, "hint")
    with pytest.raises(DataError, match=r"^dataset 'ds': cannot load org/other at refs/convert/parquet: "
                                        r"HF_HUB_OFFLINE is set and it is not in the huggingface_hub cache; hint$"):
        H.load_hub("org/other", None, H.PARQUET_BRANCH, ["train"], "ds", None, "hint")


# -------------------------------------------------------------------------------------- a local copy (path)


@pytest.mark.parametrize(("layout", "config"), [
    ({"train": "wic/super_glue-train.parquet", "validation": "wic/super_glue-validation.parquet",
      "train_r2": "wic/super_glue-train_r2.parquet", "other": "boolq/super_glue-validation.parquet"}, "wic"),
    ({"train": "default/train/0000.parquet", "validation": "default/validation/0000.parquet",
      "train_r2": "default/train_r2/0000.parquet"}, None),
    ({"train": "data/train-00000-of-00001.parquet", "validation": "data/validation-00000-of-00001.parquet",
      "train_r2": "data/train_r2-00000-of-00001.parquet"}, None),
    ({"train": "train/0000.parquet", "validation": "validation/0000.parquet", "train_r2": "train_r2/0000.parquet"},
     None),
])
def test_local_copy_uses_the_same_picker(tmp_path, layout, config):
    repo = tmp_path / "repo"
    for split, name in layout.items():
        write_parquet(repo / name, rows(split[:2], 2))
    tables = H.load_source("o", data_files=None, path=str(repo), hub_id=None, config=config, revision=None,
                           splits=["train", "validation", "test"], cache_dir=None, hint="h")
    assert sorted(tables) == ["train", "validation"]  # a split without files is left out (test drawn from train)
    assert sentences(tables["train"]) == ["tr0", "tr1"] and sentences(tables["validation"]) == ["va0", "va1"]


def test_local_copy_without_a_matching_file_lists_the_parquet_files(tmp_path):
    repo = tmp_path / "repo"
    write_parquet(repo / "wic" / "super_glue-dev.parquet", rows("d"))
    with pytest.raises(DataError) as e:
        H.load_source("o", data_files=None, path=str(repo), hub_id=None, config="wic", revision=None,
                      splits=["train"], cache_dir=None, hint="h")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"dataset 'o': cannot read the directory {str(repo)!r}: ")
    assert msg.endswith("(and no parquet file there is one of split 'train': files for config 'wic': "
                        "wic/super_glue-dev.parquet)")


def test_hub_error_falls_back_to_the_cached_listing(monkeypatch, tmp_path):
    """The hub answers with an error (down, 5xx): what an earlier download cached still serves."""
    write_parquet(tmp_path / "snap" / "default" / "train" / "0000.parquet", rows("c"))
    seen = []

    def listing(hub_id, revision, local_only):
        if not local_only:
            raise RuntimeError("503 Service Unavailable")
        return ["default/train/0000.parquet"]

    def download(hub_id, revision, files, local_only):
        seen.append((files, local_only))
        return str(tmp_path / "snap")

    monkeypatch.setattr(H, "list_hub_files", listing)
    monkeypatch.setattr(H, "download_hub_files", download)
    monkeypatch.setattr(H, "hub_reachable", lambda: True)
    tables = H.load_hub("org/ds", None, H.PARQUET_BRANCH, ["train"], "ds", None, "hint")
    assert sentences(tables["train"]) == ["c0", "c1", "c2"] and seen == [(["default/train/0000.parquet"], True)]


def test_local_copy_with_several_configs_and_none_named_is_read_by_datasets(tmp_path):
    """No config named and a split in several config folders: the picker does not choose, datasets reads the copy
    (as it reads a main branch: every folder's train files)."""
    repo = tmp_path / "repo"
    write_parquet(repo / "harmless" / "train-00000-of-00001.parquet", rows("h", 2))
    write_parquet(repo / "helpful" / "train-00000-of-00001.parquet", rows("p", 2))
    tables = H.load_source("o", data_files=None, path=str(repo), hub_id=None, config=None, revision=None,
                           splits=["train"], cache_dir=None, hint="h")
    assert sorted(sentences(tables["train"])) == ["h0", "h1", "p0", "p1"]
