"""The counter-based stream's raw words: Random123's known answers and randomgen's Philox4x32."""
import numpy as np
import pytest

import fillers
from fillers import _kernels

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output.
KNOWN_ANSWERS = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_random123_known_answers(counter, key, expected):
    assert _kernels.philox4x32_10(counter, key) == expected


@pytest.mark.parametrize("block", [0, 1, 0x243F6A88 | (0x0370 << 32), 2**62 - 1])
def test_raw_words_follow_the_documented_layout(block):
    # Word j is word j % 4 of block b = j // 4 with counter (b_lo, b_hi, stream_lo, stream_hi).
    seed, stream = 0xA4093822 | (0x299F31D0 << 32), 0x13198A2E | (0x03707344 << 32)
    counter = [block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32]
    expected = _kernels.philox4x32_10(counter, [seed & 0xFFFFFFFF, seed >> 32])
    assert fillers.philox_raw(4, seed=seed, stream=stream, offset=4 * block).tolist() == expected
    assert fillers.philox_raw(4).tolist() == KNOWN_ANSWERS[0][2]


@pytest.mark.parametrize(
    "seed, stream, offset",
    [(0, 0, 0), (1, 0, 5), (2**64 - 1, 2**64 - 1, 1001), (0xDEADBEEF12345678, 42, 2**40 + 3)],
)
def test_agrees_with_randomgen_philox4x32(seed, stream, offset):
    randomgen = pytest.importorskip("randomgen")
    n = 37
    first_block = offset // 4
    # randomgen advances its counter before producing a block, so start one block earlier.
    start = ((stream << 64) + first_block - 1) % 2**128
    gen = randomgen.Philox(number=4, width=32, key=seed, counter=start)
    expected = np.asarray(gen.random_raw(n + 4), dtype=np.uint32)[offset % 4 : offset % 4 + n]
    np.testing.assert_array_equal(fillers.philox_raw(n, seed=seed, stream=stream, offset=offset), expected)


def test_raw_offsets_are_consistent():
    whole = fillers.philox_raw(1000, seed=7, stream=3)
    for offset in (1, 2, 3, 4, 5, 511, 997):
        np.testing.assert_array_equal(fillers.philox_raw(1000 - offset, seed=7, stream=3, offset=offset),
                                      whole[offset:])


def test_seed_and_stream_change_every_word():
    base = fillers.philox_raw(64, seed=1, stream=0)
    assert not np.any(base == fillers.philox_raw(64, seed=2, stream=0))
    assert not np.any(base == fillers.philox_raw(64, seed=1, stream=1))
    assert not np.any(base == fillers.philox_raw(64, seed=1 + 2**32, stream=0))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n": -1}, ValueError),
        ({"n": 4, "seed": -1}, ValueError),
        ({"n": 4, "seed": 2**64}, ValueError),
        ({"n": 4, "stream": 1.5}, TypeError),
        ({"n": 4, "offset": 2**64 - 2}, ValueError),
        ({"n": 4.0}, TypeError),
    ],
)
def test_raw_rejects_bad_arguments(kwargs, error):
    n = kwargs.pop("n")
    with pytest.raises(error):
        fillers.philox_raw(n, **kwargs)
