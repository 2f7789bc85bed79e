"""Executed notebooks are stripped of what changes run to run, and keep their results."""

from __future__ import annotations

import json

from pxby_lib.notebooks import strip, strip_notebook


def executed(start: str, seconds: float, cell_id: str) -> dict:
    return {
        "metadata": {"papermill": {"start_time": start, "end_time": start, "duration": seconds,
                                   "parameters": {"row": "r"}, "input_path": "/home/me/x.ipynb",
                                   "output_path": "/home/me/y.ipynb", "environment_variables": {},
                                   "version": "2.7.0", "exception": None},
                     "kernelspec": {"name": "python3"}},
        "cells": [
            {"cell_type": "code", "id": cell_id, "execution_count": 1,
             "metadata": {"papermill": {"duration": seconds, "status": "completed"},
                          "execution": {"iopub.execute_input": start}, "tags": ["parameters"]},
             "outputs": [{"output_type": "stream", "name": "stderr", "text": f"epoch 1: {seconds} s\n"},
                         {"output_type": "stream", "name": "stdout", "text": "loss 2.0\n"},
                         {"output_type": "display_data", "data": {"text/plain": "table"}}],
             "source": "x = 1"},
        ],
    }


def test_two_runs_with_the_same_results_strip_to_the_same_bytes(tmp_path):
    a, b = tmp_path / "a.ipynb", tmp_path / "b.ipynb"
    a.write_text(json.dumps(executed("2026-12-01T10:00", 12.5, "3f2a9c")))
    b.write_text(json.dumps(executed("2026-12-02T11:30", 13.1, "b81d07")))
    strip(a)
    strip(b)
    assert a.read_bytes() == b.read_bytes()
    nb = json.loads(a.read_text())
    cell = nb["cells"][0]
    assert [o.get("name", o["output_type"]) for o in cell["outputs"]] == ["stdout", "display_data"]
    assert cell["id"] == "cell-00" and cell["metadata"] == {"tags": ["parameters"]}
    assert nb["metadata"]["papermill"] == {"parameters": {"row": "r"}, "exception": None}


def test_different_results_stay_different():
    one, two = executed("t", 1.0, "a"), executed("t", 1.0, "a")
    two["cells"][0]["outputs"][1]["text"] = "loss 1.9\n"
    assert strip_notebook(one) != strip_notebook(two)
