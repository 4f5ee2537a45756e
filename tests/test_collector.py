"""The collector pause (dcpnet/collector.py): the collector comes back as it was, nothing is left frozen, and
what a caller froze stays frozen (a `dcpnet check` run in process must not grow the frozen set: counting it
is linear, and every later pause counts it)."""
import gc

from conftest import EXAMPLES

from dcpnet.cli import main
from dcpnet.collector import gc_paused


def test_the_collector_comes_back_as_it_was():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():                       # nested: the inner pause leaves the outer one alone
            pass
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()               # a caller's choice is kept
    finally:
        gc.enable()


def test_what_a_caller_froze_stays_frozen():
    kept = [[i] for i in range(100)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            made = [[i] for i in range(100)]
        assert gc.get_freeze_count() == frozen and made and kept
    finally:
        gc.unfreeze()


def test_a_check_in_process_freezes_nothing(capsys):
    assert main(["check", str(EXAMPLES / "icnn.net")]) == 0
    capsys.readouterr()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
