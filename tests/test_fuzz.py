"""The fuzzing harness in the tests: 2,500 mutated nets through the whole pipeline (about 25 s).

Hypothesis draws the seed file and the mutations (derandomized: the same inputs on every run); every input
must end ``ok`` or in a documented error (see ``tests/fuzzing.py``).  The 100,000-input run is
``benchmarks/fuzz.py``.  The seeds here are the small ones (the examples, the hand-written nets and corpus
files under 4 KB) so that the test stays fast.
"""
import random
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzzing  # noqa: E402 (tests/fuzzing.py: the harness, shared with benchmarks/fuzz.py)

SMALL = [data for data in fuzzing.seeds() if len(data) < 4096]


@settings(max_examples=2500, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(seed=st.sampled_from(SMALL), rnd=st.randoms(use_true_random=False))
def test_mutated_nets_end_ok_or_in_a_documented_error(seed: bytes, rnd: random.Random) -> None:
    data = fuzzing.mutate(seed, rnd)
    outcome = fuzzing.run_pipeline(data, rnd.randrange(2**16))
    assert not outcome.startswith("UNDOCUMENTED"), (outcome, data[:2000])


def test_each_mutation_changes_its_input() -> None:
    """Every mutation does something to a typical net (a harness that mutates nothing tests nothing)."""
    seed = fuzzing.EXTRA_SEEDS[-1]
    for mutation in fuzzing.MUTATIONS:
        changed = sum(mutation(seed, random.Random(i)) != seed for i in range(20))
        assert changed >= 10, mutation.__name__
