"""The CLI's resume point: where a run picks up a JSONL file it was interrupted in."""

import json

from devstack.indexer import Progress, Totals, _batches

LINES = [json.dumps({"id": f"n{i}", "text": f"note {i}"}) + "\n" for i in range(6)]


def _file(tmp_path, lines):
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(lines))
    return path


def _saved_after(path, n_lines):
    progress = Progress(path.with_name(path.name + ".progress"), path)
    offset = len("".join(LINES[:n_lines]).encode())
    progress.save(offset, n_lines, Totals(created=n_lines))
    return offset


def _resume_point(path):
    return Progress(path.with_name(path.name + ".progress"), path).load().get("offset", 0)


def test_an_unchanged_file_resumes_where_the_last_run_stopped(tmp_path):
    path = _file(tmp_path, LINES)
    offset = _saved_after(path, 3)
    state = Progress(path.with_name(path.name + ".progress"), path).load()
    assert (state["offset"], state["line"], state["totals"]["created"]) == (offset, 3, 3)


def test_a_file_that_only_grew_resumes_and_its_new_lines_are_still_to_send(tmp_path):
    path = _file(tmp_path, LINES[:4])
    offset = _saved_after(path, 3)
    with open(path, "a") as f:
        f.write("".join(LINES[4:]))
    assert _resume_point(path) == offset


def test_a_file_changed_before_the_resume_point_starts_over(tmp_path):
    path = _file(tmp_path, LINES)
    _saved_after(path, 3)
    path.write_text("".join(LINES).replace("note 1", "note I"))  # same size, one line rewritten
    assert _resume_point(path) == 0


def test_a_file_cut_short_or_a_foreign_progress_file_starts_over(tmp_path):
    path = _file(tmp_path, LINES)
    _saved_after(path, 5)
    path.write_text("".join(LINES[:2]))
    assert _resume_point(path) == 0
    for foreign in ('{"offset": 10, "size": 1, "mtime": 2}', "[1, 2]", "not json", '{"offset": -1}'):
        path.with_name(path.name + ".progress").write_text(foreign)
        assert _resume_point(path) == 0, foreign


def test_a_change_after_the_resume_point_does_not_restart(tmp_path):
    path = _file(tmp_path, LINES)
    offset = _saved_after(path, 2)
    path.write_text("".join(LINES[:2]) + "".join(LINES[2:]).replace("note 4", "note four"))
    assert _resume_point(path) == offset, "lines not yet sent may change: they are sent as they are now"


def test_batches_carry_their_end_their_line_and_the_bad_lines_before_them(tmp_path):
    lines = [LINES[0], "not json\n", LINES[1], "\n", LINES[2], '{"text": ""}\n']
    path = _file(tmp_path, lines)
    reported = []
    batches = list(_batches(path, 0, 0, 2, 1000, reported.append))
    assert [(len(b.documents), b.line, b.rejected) for b in batches] == [(2, 3, 1), (1, 6, 1)]
    assert batches[-1].end == path.stat().st_size
    assert [r.split(":")[0] for r in reported] == ["line 2", "line 6"]
    resumed = list(_batches(path, batches[0].end, batches[0].line, 2, 1000, reported.append))
    assert [(len(b.documents), b.line, b.rejected) for b in resumed] == [(1, 6, 1)], "resumed: counted once"
    assert reported[-1].startswith("line 6"), "line numbers go on from the saved line"


def _cli(*argv):
    from devstack.cli import main

    return main(["index", *argv])


def test_a_missing_file_is_named_without_a_traceback(tmp_path, capsys):
    assert _cli(str(tmp_path / "nope.jsonl"), "--api", "http://127.0.0.1:9", "--quiet") == 2
    err = capsys.readouterr().err
    assert "nope.jsonl: no such file" in err and "Traceback" not in err
    assert _cli(str(tmp_path), "--api", "http://127.0.0.1:9", "--quiet") == 2
    assert "is a folder" in capsys.readouterr().err


def test_when_the_api_does_not_answer_the_cli_names_the_url_it_tried_and_how_to_point_it_elsewhere(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _file(tmp_path, LINES[:2])
    assert _cli(str(path), "--api", f"http://127.0.0.1:{port}", "--tries", "1", "--quiet") == 1
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}" in err and "--api" in err and "DATA_DIR" in err and "Traceback" not in err


def test_a_line_that_is_not_json_is_reported_in_the_files_own_terms(tmp_path):
    reports = []
    path = _file(tmp_path, ['{"text": "cut short"\n', '{"text": "fine"}\n', '{"text": x}\n'])
    (batch,) = list(_batches(path, 0, 0, 10, 1000, reports.append))
    assert [d["text"] for d in batch.documents] == ["fine"] and batch.rejected == 2
    assert reports[0].startswith("line 1: not JSON (") and "end of the line" in reports[0]
    assert reports[1].startswith("line 3: not JSON (") and "column 10" in reports[1]
    assert not any("line 2 column" in r for r in reports), reports
