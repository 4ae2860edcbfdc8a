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
