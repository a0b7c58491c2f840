from __future__ import annotations

import pytest

from heart import generation as g


def test_grows_at_every_start_and_persists(tmp_path):
    path = tmp_path / "generation"
    assert g.read_generation(path) is None
    first = g.next_generation(path)
    second = g.next_generation(path)
    third = g.next_generation(path)
    assert first < second < third
    assert g.read_generation(path) == third
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_lost_or_old_file_cannot_repeat_a_generation(tmp_path):
    path = tmp_path / "generation"
    used = g.next_generation(path)
    path.write_text("5\n")  # restored from an old backup
    assert g.next_generation(path) > used
    path.unlink()  # lost
    assert g.next_generation(path) > used


def test_a_generation_ahead_of_the_clock_still_grows(tmp_path):
    path = tmp_path / "generation"
    ahead = (1 << 62) + 7
    path.write_text(f"{ahead}\n")
    assert g.next_generation(path) == ahead + 1


@pytest.mark.parametrize("text", ["", "abc", "-3", str(2**64)])
def test_bad_file_is_named_and_left_alone(tmp_path, text):
    path = tmp_path / "generation"
    path.write_text(text)
    with pytest.raises(g.GenerationError, match=str(path)):
        g.next_generation(path)
    assert path.read_text() == text
