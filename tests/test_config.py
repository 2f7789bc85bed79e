"""params.yaml as typed configs: merge patches, validation, what each stage may read."""

from __future__ import annotations

from pathlib import Path

import pytest

from pxby_lib.config import (
    ParamsError,
    StageConfig,
    TrainConfig,
    build_section,
    load_config,
    merge_patch,
    set_flags,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("target", "patch", "expected"), [  # RFC 7386's own examples
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"a": "foo"}, None, None),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_merge_patch_is_rfc_7386(target, patch, expected):
    assert merge_patch(target, patch) == expected


def test_sections_are_typed_and_complete():
    values = {f: getattr(TrainConfig(), f) for f in TrainConfig.__dataclass_fields__}
    assert build_section(TrainConfig, {**values, "lr": 1}, "train").lr == 1.0  # int -> float
    with pytest.raises(ParamsError, match=r"train.patience = True \(bool\): expected an integer"):
        build_section(TrainConfig, {**values, "patience": True}, "train")
    with pytest.raises(ParamsError, match=r"missing key\(s\) \['patience'\]; add them \(defaults"):
        build_section(TrainConfig, {k: v for k, v in values.items() if k != "patience"}, "train")
    with pytest.raises(ParamsError, match="train.max_epochs = -3: allowed an integer >= 0"):
        build_section(TrainConfig, {**values, "max_epochs": -3}, "train")


def test_a_stage_reads_only_what_it_declares():
    config = load_config(ROOT / "params.yaml")
    train = StageConfig(config, "train", "pokemon", "rnn_bi_pxby_conv_d81_s64_l2")
    assert train.row.seeds == (0, 1, 2) and train.train.max_epochs == config.train.max_epochs
    assert train.dataset.test_fraction == 0.1
    with pytest.raises(ParamsError, match="reads `datasets.pokemon.source`"):
        train.dataset.source  # noqa: B018  (the train stage reads artifacts/, not the source)
    with pytest.raises(ParamsError, match="reads `evaluate`, which it does not declare"):
        train.evaluate  # noqa: B018
    prepare = StageConfig(config, "prepare", "emoji")
    assert prepare.dataset.max_size == 16
    with pytest.raises(ParamsError, match="reads `datasets.emoji.test_fraction`, which it does not"):
        prepare.dataset.test_fraction  # noqa: B018  (the split happens after prepare)
    with pytest.raises(ParamsError, match="stage .prepare. has no row"):
        prepare.row  # noqa: B018
    with pytest.raises(ParamsError, match="not run on dataset 'emoji': add `emoji-rnn_bi_pxby_conv_d36"):
        StageConfig(config, "train", "emoji", "rnn_bi_pxby_conv_d36_s64_l2")
    report = StageConfig(config, "report", "emoji")
    emoji_rows = [r.row for r in config.runs.values() if r.dataset == "emoji"]
    assert {r.name for r in report.rows} == set(emoji_rows)
    assert sum(config.models[r].objective == "last" for r in emoji_rows) == 6  # + its twins
    assert [r.name for r in StageConfig(config, "report", "pokemon").rows] == [
        n for n in config.models if f"pokemon-{n}" in config.runs]  # in `models` order


def test_single_keys_of_a_section_and_the_undeclared_worker_count():
    """A stage that declares single keys of a section reads those and no others;
    `compute.cores` (how many workers, which changes no bytes) any stage may read."""
    config = load_config(ROOT / "params.yaml")
    baselines = StageConfig(config, "baselines", "pokemon")
    assert (baselines.train.seq_len, baselines.train.sample_stride) == (128, 128)
    with pytest.raises(ParamsError, match="reads `train.lr`, which it does not declare"):
        baselines.train.lr  # noqa: B018
    assert baselines.evaluate.to_dict() == {k: getattr(config.evaluate, k) for k in (
        "batch_size", "chunk_stride", "gen_len", "incremental", "max_items", "next_positions",
        "prompt_len", "subset_seed")}
    assert baselines.compute.cores == 2
    with pytest.raises(ParamsError, match="reads `compute.device`"):
        baselines.compute.device  # noqa: B018
    evaluate = StageConfig(config, "evaluate", "emoji", "att_pxby_conv_d81_l1")
    assert evaluate.compute.device == "auto" and evaluate.dataset.test_fraction == 0.1
    with pytest.raises(ParamsError, match="reads `datasets.emoji.max_size`"):
        evaluate.dataset.max_size  # noqa: B018
    train = StageConfig(config, "train", "pokemon", "att_pxby_conv_d81_l1")
    assert train.compute is config.compute  # declared whole: its threads per job follow from cores


def test_set_flags_apply_a_profile_with_dvc_exp_run():
    flags = set_flags({"train": {"max_epochs": 200, "eval_every": 5}, "seeds": [0, 1]})
    assert flags == ["-S train.max_epochs=200", "-S train.eval_every=5", "-S seeds=[0, 1]"]
    with pytest.raises(ParamsError, match="cannot delete a key"):
        set_flags({"models": {"x": None}})
