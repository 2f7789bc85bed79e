"""pxby-generate never misleads: each user error is ONE line naming the input and the fix
(never "delete it"), and the output names the model, its training seed, the prompt and
the decoding."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_render_cli import make_item, save_tiny, write_dataset  # tests/ is on sys.path

from pxby_lib import cli

ROW = "rnn_bi_tiny"


def one_line_error(capsys, args) -> str:
    """Run the CLI, check exit status 2 and a single stderr line; return that line."""
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("pxby-generate: error: ") and captured.err.count("\n") == 1
    assert "delete" not in captured.err and "Traceback" not in captured.err
    return captured.err


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A project-like folder, as the cwd: models/pokemon/<ROW>/s3/last.pt (seed 3) and a dataset."""
    monkeypatch.chdir(tmp_path)
    save_tiny(tmp_path / "models" / "pokemon" / ROW / "s3" / "last.pt", seed=3)
    write_dataset(tmp_path / "ds", [make_item(i)[1] for i in range(3)])
    return tmp_path


CKPT = f"models/pokemon/{ROW}/s3/last.pt"


# ---------------------------------------------------------------------- missing checkpoint


def test_missing_run_checkpoint_says_dvc_pull_and_names_the_stage(repo, capsys):
    err = one_line_error(capsys, ["--checkpoint", f"models/pokemon/{ROW}/s9/last.pt",
                                  "--caption", "x"])
    assert f"--checkpoint models/pokemon/{ROW}/s9/last.pt does not exist" in err
    assert f"`dvc pull models/pokemon/{ROW}`" in err  # first advice: fetch, not recompute
    assert f"train@pokemon-{ROW}" in err and "present here: s3" in err
    assert err.index("dvc pull") < err.index("dvc repro")


def test_missing_other_checkpoint_and_a_folder(repo, capsys):
    err = one_line_error(capsys, ["--checkpoint", "nope.pt", "--item", "0"])
    assert "--checkpoint nope.pt does not exist" in err and "dvc pull models" in err
    err = one_line_error(capsys, ["--checkpoint", "models/pokemon", "--item", "0"])
    assert "is a folder" in err and f"e.g. models/pokemon/{ROW}/s3/last.pt" in err


# ---------------------------------------------------------------------- not a checkpoint


def _write(path, kind, good):
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "lfs":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    elif kind == "dvc":
        path.write_text("outs:\n- md5: 0123456789abcdef\n  size: 10\n  path: last.pt\n")
    elif kind == "text":
        path.write_text("hello, world\n")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "image":
        Image.new("RGB", (4, 4)).save(path, format="PNG")


@pytest.mark.parametrize("kind, says", [
    ("empty", "it is an empty file (0 bytes)"),
    ("lfs", "git-lfs pointer"),
    ("dvc", "DVC pointer file"),
    ("text", "it is a text file (13 bytes, starting 'hello, world')"),
    ("truncated", "truncated zip/torch file"),
    ("foreign", "torch file without the pxby-checkpoint/1 format (it holds ['weights'])"),
    ("image", "it is an image; pass images with --sprite"),
])
def test_a_file_that_is_not_a_checkpoint_says_what_it_is(repo, capsys, kind, says):
    path = repo / "other" / "file.pt"
    _write(path, kind, repo / CKPT)
    err = one_line_error(capsys, ["--checkpoint", str(path), "--caption", "x"])
    assert f"--checkpoint {path} is not a pxby checkpoint" in err and says in err
    assert "retrain" not in err


def test_a_damaged_run_checkpoint_is_restored_with_dvc_pull(repo, capsys):
    path = repo / "models" / "pokemon" / ROW / "s1" / "last.pt"
    _write(path, "truncated", repo / CKPT)
    err = one_line_error(capsys, ["--checkpoint", f"models/pokemon/{ROW}/s1/last.pt",
                                  "--caption", "x"])
    assert "truncated" in err and f"`dvc pull --force models/pokemon/{ROW}`" in err


def test_a_checkpoint_whose_weights_do_not_load_is_not_called_a_non_checkpoint(repo, capsys):
    good = torch.load(repo / CKPT, weights_only=True)
    good["model_state"] = {k: v[..., :1] for k, v in good["model_state"].items()}
    torch.save(good, repo / "bad.pt")
    err = one_line_error(capsys, ["--checkpoint", "bad.pt", "--caption", "x"])
    assert "bad.pt failed to load on --device cpu: RuntimeError" in err
    assert "not a pxby checkpoint" not in err


# ---------------------------------------------------------------------- devices


def test_cuda_without_a_gpu_says_use_cpu(repo, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        err = one_line_error(capsys, ["--checkpoint", CKPT, "--caption", "x", "--device", device])
        assert f"--device {device}: this machine has no usable CUDA GPU" in err
        assert "use --device cpu" in err


def test_a_gpu_index_past_the_gpus_and_an_invalid_device(repo, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    err = one_line_error(capsys, ["--checkpoint", CKPT, "--caption", "x", "--device", "cuda:3"])
    assert "has 1 CUDA GPU(s); use --device cuda:0 .. cuda:0 or --device cpu" in err
    err = one_line_error(capsys, ["--checkpoint", CKPT, "--caption", "x", "--device", "gpu"])
    assert "--device gpu is not a torch device: use --device cpu" in err


# ---------------------------------------------------------------------- other inputs


@pytest.mark.parametrize("extra, says", [
    (["--item", "7", "--dataset", "ds"], "--item 7 is out of range: ds has 3 items, use 0..2"),
    (["--item", "0", "--dataset", "ds", "--prompt-len", "0"], "--prompt-len 0 must be in 1.."),
    (["--item", "0", "--dataset", "artifacts/pokemon"],
     "--dataset artifacts/pokemon does not exist: `dvc pull artifacts/pokemon` fetches it "
     "(stage prepare@pokemon)"),
    (["--item", "0", "--dataset", "models"], "--dataset models: dataset models: missing"),
    (["--sprite", "nope.png"], "--sprite nope.png does not exist"),
    (["--sprite", CKPT], f"--sprite {CKPT}: cannot read image file"),
    (["--caption", "???"], "--caption '???' has no encodable characters"),
    (["--caption", "x", "--n-tokens", "0"], "--n-tokens must be >= 1, got 0"),
    (["--caption", "x", "--temperature", "-1"], "--temperature must be >= 0, got -1.0"),
])
def test_bad_prompt_and_option_values_are_one_line(repo, capsys, extra, says):
    assert says in one_line_error(capsys, ["--checkpoint", CKPT, *extra])


def test_argparse_errors_are_one_line_too(repo, capsys):
    for args in (["--checkpoint", CKPT, "--item", "x"], ["--item", "0"],
                 ["--checkpoint", CKPT, "--caption", "x", "--item", "0"]):
        with pytest.raises(SystemExit) as stop:
            cli.main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.startswith("pxby-generate: error: ")
        assert err.count("\n") == 1 and "(see --help)" in err


# ---------------------------------------------------------------------- the output


def test_output_names_model_seed_prompt_and_explains_greedy(repo, capsys):
    assert cli.main(["--checkpoint", CKPT, "--caption", "A fire lizard", "--n-tokens", "8"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (f"model: {ROW} (pokemon), training seed 3, epoch 1: rnn, bidirectional, "
                        f"pxby embedding + conv, d_model 18, d_state 8, depth 1, objective last "
                        f"[{CKPT}]")
    assert lines[1] == "prompt: caption 'a fire lizard': the model writes a shape and an image"
    assert lines[2] == "decoding: 8 new tokens, greedy (--temperature 0, the paper's setting)"
    assert "most frequent colour" in lines[3] and "--temperature 1 samples" in lines[3]
    assert "shape: None" not in out
    shape = next(line for line in lines if line.startswith("shape: "))
    assert shape.startswith("shape: (") or shape.startswith("shape: not generated (the model wrote")
    assert any(line.startswith("image: ") for line in lines)
    assert err.count("\n") <= 1  # decoding problems: at most one note line


def test_output_of_item_and_sampled_sprite_prompts(repo, capsys):
    assert cli.main(["--checkpoint", CKPT, "--item", "1", "--dataset", "ds",
                     "--prompt-len", "20", "--n-tokens", "5"]) == 0
    out = capsys.readouterr().out
    assert "prompt: item 1 (mon1) of ds: its first 20 of " in out and "shape: (5, 4)" in out
    sprite = np.full((6, 5, 3), 255, np.uint8)
    sprite[1:5, 1:4] = (248, 56, 0)  # one palette-red block on white
    Image.fromarray(sprite).save(repo / "s.png")
    assert cli.main(["--checkpoint", CKPT, "--sprite", "s.png", "--n-tokens", "5",
                     "--temperature", "1", "--top-k", "4", "--seed", "7"]) == 0
    out, err = capsys.readouterr()
    assert "prompt: sprite s.png (" in out and "the model writes a caption" in out
    assert ("decoding: 5 new tokens, sampled at --temperature 1.0, --top-k 4, --seed 7"
            in out.splitlines())
    assert "most frequent colour fills" in out and "--temperature 1 samples" not in out
    assert "generation stopped at --n-tokens 5" in err and err.count("\n") == 1
