"""The progress bars of the long phases (issue 15.8): a bar advances to its total, rows nest, and nothing is drawn
off a terminal or when progress is switched off."""

from io import StringIO

from rich.console import Console

from lightning_privacy.progress import bar, progress_disabled


def _terminal() -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_a_bar_advances_to_its_total_with_an_inner_row():
    console, out = _terminal()
    with bar("helper models", total=3, console=console) as outer:
        for i in outer.track(range(3)):
            with bar(f"helper {i + 1} fit", total=None) as inner:  # joins the outer display as a second row
                inner.update(total=4)
                for _ in range(4):
                    inner.advance()
                assert inner.completed == inner.total == 4
        assert outer.completed == outer.total == 3
    text = out.getvalue()
    assert "helper models" in text and "helper 3 fit" in text and "3/3" in text


def test_track_keeps_the_length_of_what_it_wraps():
    console, _ = _terminal()
    with bar("signals", total=5, console=console) as b:
        tracked = b.track([1, 2, 3, 4, 5])
        assert len(tracked) == 5 and list(tracked) == [1, 2, 3, 4, 5]
        assert b.completed == 5


def test_nothing_is_drawn_off_a_terminal_or_when_disabled_but_counts_advance():
    plain = StringIO()
    with bar("bootstrap", total=2, console=Console(file=plain)) as b:  # not a terminal (a log file, CI)
        b.advance(2)
        assert b.completed == 2
    console, out = _terminal()
    with progress_disabled(), bar("bootstrap", total=2, console=console) as b:
        b.advance(2)
        assert b.completed == 2
    assert plain.getvalue() == "" and out.getvalue() == ""
    with progress_disabled(False), bar("bootstrap", total=2, console=console) as b:  # False: a no-op
        b.advance(2)
    assert "bootstrap" in out.getvalue()


def test_a_bar_inside_lightnings_live_display_redraws_as_it_advances(monkeypatch):
    """Lightning's RichProgressBar redraws only on its own batches (no refresh thread); a bar nested in it must
    redraw itself, or it sits at its first frame (0 %) for the whole phase."""
    from rich.live import Live

    from lightning_privacy import progress

    monkeypatch.setattr(progress, "REFRESH_S", 0.0)
    console, out = _terminal()
    with Live("Testing", console=console, auto_refresh=False):  # as Lightning's bar during the audit
        with bar("signals", total=5, console=console) as b:
            for _ in range(5):
                b.advance()
    assert "signals" in out.getvalue() and "3/5" in out.getvalue()
