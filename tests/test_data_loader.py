"""TokenLoader: windows equal the prepared tokens, determinism, exact resume, epochs that cover
every window once (shifted epochs: on a grid moved each epoch), batches of other sizes, disjoint
ranks, windows across shard boundaries, clear errors."""

import json

import numpy as np
import pytest
import torch

from gptlab.data.loader import TokenLoader, split_num_tokens
from gptlab.data.prepare import prepare_dataset
from gptlab.data.prepared_folder import read_meta
from gptlab.errors import GptlabError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, shared_data):
    """TinyShakespeare, char-level, in shards of 100,000 tokens (so windows cross shards)."""
    text_file = shared_data / "tinyshakespeare" / "input.txt"
    out = tmp_path_factory.mktemp("loader") / "ts"
    return prepare_dataset(
        str(text_file),
        tokenizer="char",
        out=out,
        shard_tokens=100_000,
        workers=1,
        show_progress=False,
    )


def all_tokens(folder, split) -> np.ndarray:
    meta = read_meta(folder)
    return np.concatenate(
        [
            np.fromfile(folder / s["file"], dtype=meta["dtype"])
            for s in meta["splits"][split]["shards"]
        ]
    ).astype(np.int64)


class WindowFinder:
    """Finds where a row of tokens begins in a split (by content: the only start it matches at)."""

    PREFIX = 24

    def __init__(self, data: np.ndarray):
        self.data = data
        self.index: dict[bytes, list[int]] = {}
        for s in range(len(data) - self.PREFIX + 1):
            self.index.setdefault(data[s : s + self.PREFIX].tobytes(), []).append(s)

    def starts(self, x: torch.Tensor) -> list[int]:
        found = []
        for row in x.numpy():
            matches = [
                s
                for s in self.index[row[: self.PREFIX].tobytes()]
                if np.array_equal(self.data[s : s + len(row)], row)
            ]
            assert len(matches) == 1
            found.append(matches[0])
        return found


@pytest.fixture(scope="module")
def val_windows(prepared):
    return WindowFinder(all_tokens(prepared, "val"))


def test_batches_are_windows_of_the_prepared_tokens(prepared, val_windows):
    data = val_windows.data
    loader = TokenLoader(prepared, "val", batch_size=4, block_size=64, mode="random", seed=3)
    assert loader.num_tokens == split_num_tokens(prepared, "val") == 111_540
    for _ in range(3):
        x, y = loader.next_batch()
        assert x.shape == y.shape == (4, 64) and x.dtype == y.dtype == torch.int64
        for row, start in zip(range(4), val_windows.starts(x), strict=True):
            assert torch.equal(y[row], torch.from_numpy(data[start + 1 : start + 65]))
    assert all(isinstance(shard, np.memmap) for shard in loader._shards)


def test_windows_across_shard_boundaries(prepared):
    data = all_tokens(prepared, "train")
    loader = TokenLoader(prepared, "train", batch_size=1, block_size=64)
    for start in (99_990, 199_999, 100_000, 0, len(data) - 65):
        assert np.array_equal(loader._read(start, 65), data[start : start + 65])


@pytest.mark.parametrize("mode", ["random", "sequential", "shifted"])
def test_same_seed_same_batches_and_exact_resume(prepared, mode):
    def loader(seed=0):
        return TokenLoader(prepared, "val", batch_size=8, block_size=256, mode=mode, seed=seed)

    first, second = loader(), loader()
    # 70 batches of 8 windows pass the end of a sequential epoch (435 windows of 256 tokens).
    for _ in range(70):
        assert all(
            torch.equal(a, b) for a, b in zip(first.next_batch(), second.next_batch(), strict=True)
        )
    state = json.loads(json.dumps(first.state_dict()))  # plain values, saved with a checkpoint
    expected = [first.next_batch() for _ in range(3)]
    resumed = loader()
    resumed.load_state_dict(state)
    for (x, y), (rx, ry) in zip(expected, (resumed.next_batch() for _ in range(3)), strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert not torch.equal(loader(seed=1).next_batch()[0], loader().next_batch()[0])


def test_a_sequential_epoch_covers_every_window_once(prepared, val_windows):
    data = val_windows.data
    block = 512
    loader = TokenLoader(prepared, "val", batch_size=5, block_size=block, mode="sequential", seed=1)
    windows = (len(data) - 1) // block
    assert loader.num_windows == windows == 217
    rows = torch.cat([loader.next_batch()[0] for _ in range(-(-windows // 5))])[:windows]
    starts = val_windows.starts(rows)
    assert sorted(starts) == [k * block for k in range(windows)]
    assert starts != sorted(starts)  # shuffled


def test_a_shifted_epoch_covers_every_window_of_its_grid_once_and_the_grid_moves(
    prepared, val_windows
):
    data = val_windows.data
    block = 512
    loader = TokenLoader(prepared, "val", batch_size=5, block_size=block, mode="shifted", seed=1)
    # windows that fit whatever the offset o in [0, 512): (111,540 - 512) // 512
    assert loader.num_windows == (len(data) - block) // block == 216
    offsets = []
    for epoch in range(3):
        rows = torch.cat([loader.next_batch(rows=6)[0] for _ in range(36)])  # 216 = 36 x 6
        starts = val_windows.starts(rows)
        offset = min(starts)
        assert 0 <= offset < block
        assert sorted(starts) == [offset + k * block for k in range(216)], epoch
        assert starts != sorted(starts)  # shuffled
        offsets.append(offset)
    assert len(set(offsets)) == 3  # a new grid each epoch


def test_batches_of_other_sizes_continue_the_same_stream(prepared):
    """A batch-size ramp asks for fewer rows: the epoch modes serve the next windows in order,
    random mode draws batch k's rows from batch k's own generator, whatever their number."""
    for mode in ("sequential", "shifted"):
        whole = TokenLoader(prepared, "val", 8, 64, mode=mode, seed=2).next_batch()[0]
        parts = TokenLoader(prepared, "val", 8, 64, mode=mode, seed=2)
        pieces = [parts.next_batch(rows=3)[0], parts.next_batch(rows=5)[0]]
        assert torch.equal(torch.cat(pieces), whole)
    # random mode: batch k's rows come from generator (seed, rank, k), so a short batch is the
    # first rows of the full one, and the next batch is the full stream's next
    full = TokenLoader(prepared, "val", 8, 64, mode="random", seed=2)
    short = TokenLoader(prepared, "val", 8, 64, mode="random", seed=2)
    assert torch.equal(short.next_batch(rows=3)[0], full.next_batch()[0][:3])
    assert torch.equal(short.next_batch()[0], full.next_batch()[0])


def test_ranks_read_disjoint_parts(prepared, val_windows):
    data = val_windows.data
    block = 512
    seen = []
    for rank in range(2):
        loader = TokenLoader(prepared, "val", 4, block, mode="sequential", rank=rank, world_size=2)
        assert loader.windows_per_rank == 108
        rows = torch.cat([loader.next_batch()[0] for _ in range(27)])
        seen.append(set(val_windows.starts(rows)))
    assert len(seen[0]) == len(seen[1]) == 108 and not seen[0] & seen[1]

    half = len(data) // 2
    for rank in range(2):
        loader = TokenLoader(prepared, "val", 16, 64, mode="random", rank=rank, world_size=2)
        x, y = loader.next_batch()
        for start in val_windows.starts(x):
            assert (start + 65 <= half) if rank == 0 else (start >= half)


def test_loader_errors(prepared, tmp_path):
    with pytest.raises(
        GptlabError, match="split 'val' .* 111,540 tokens, fewer than block_size \\+ 1 = 200,001"
    ):
        TokenLoader(prepared, "val", 1, 200_000)
    with pytest.raises(GptlabError, match="no split 'test'"):
        TokenLoader(prepared, "test", 1, 8)
    with pytest.raises(GptlabError, match="not a prepared dataset"):
        TokenLoader(tmp_path, "train", 1, 8)
    with pytest.raises(GptlabError, match="unknown loader mode"):
        TokenLoader(prepared, "val", 1, 8, mode="shuffled")
    with pytest.raises(GptlabError, match="at least one row"):
        TokenLoader(prepared, "val", 2, 8).next_batch(rows=0)
    state = TokenLoader(prepared, "val", 2, 8).state_dict()
    with pytest.raises(GptlabError, match="its block_size is 16"):
        TokenLoader(prepared, "val", 2, 16).load_state_dict(state)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_batches_match_cpu_batches(prepared):
    cpu = TokenLoader(prepared, "val", 4, 64, seed=5)
    gpu = TokenLoader(prepared, "val", 4, 64, seed=5, device="cuda")
    x, y = gpu.next_batch()
    assert x.is_cuda and y.is_cuda
    cx, cy = cpu.next_batch()
    assert torch.equal(x.cpu(), cx) and torch.equal(y.cpu(), cy)


def test_meta_json_may_not_point_outside_its_folder(tmp_path):
    import json
    import shutil

    from gptlab.data.prepared_folder import read_meta
    from gptlab.data.shards import open_shards

    folder = tmp_path / "p"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(b"\0" * 8)
    for name in ("../secret.bin", str(tmp_path / "secret.bin")):
        with pytest.raises(GptlabError, match="outside .*; refusing to read it"):
            open_shards(folder, "train", [{"file": name, "tokens": 4}], "uint16")
    with pytest.raises(GptlabError, match="token dtype 'float64'"):
        open_shards(folder, "train", [], "float64")
    (folder / "meta.json").write_text(json.dumps({"format": 1, "dtype": "uint16"}))
    with pytest.raises(GptlabError, match="is damaged \\(no splits, tokenizer, vocab_size\\)"):
        read_meta(folder)
    (folder / "meta.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(GptlabError, match="is not UTF-8 text"):
        read_meta(folder)
    shutil.rmtree(folder)


def test_a_shard_holding_ids_beyond_the_vocabulary_is_one_line(prepared, tmp_path):
    import shutil

    from gptlab.data.prepared_folder import read_meta

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    for shard in read_meta(copy)["splits"]["train"]["shards"]:
        data = np.memmap(copy / shard["file"], dtype=np.uint16, mode="r+")
        data[:] = 60_000  # same size, so only the ids tell
        data.flush()
    loader = TokenLoader(copy, "train", batch_size=2, block_size=8, seed=0)
    with pytest.raises(GptlabError, match="holds token id 60000, beyond its vocabulary of 65"):
        loader.next_batch()
