"""What a resumed run needs besides the weights: the training state.

    training_state.pt (in each checkpoint, beside the model folder's files)
        optimizer    the optimizer's state_dict (AdamW, or Muon + AdamW as one OptimizerPair)
        scaler       the grad scaler's state_dict (float16 loss scaling)
        world_size   how many processes wrote it (a resume must use as many)
        ranks        per process: every random number generator's state and the loader position

It is read back with torch.load(weights_only=True), so it holds tensors and plain values only
(gptlab.rng turns NumPy's generator state into a tensor).
"""

from __future__ import annotations

from gptlab.errors import GptlabError
from gptlab.rng import capture_rng_state, restore_rng_state
from gptlab.train.optim import saved_optimizer_name


def rank_state(loader) -> dict:
    """This process's part of the training state: its RNGs and its loader's position."""
    return {"rng": capture_rng_state(), "loader": loader.state_dict()}


def training_state(optimizer, scaler, rank_states: list[dict]) -> dict:
    return {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "world_size": len(rank_states),
        "ranks": rank_states,
    }


def check_resumable(state: dict, source: str, *, world_size: int, optimizer: str) -> None:
    """Refuse, in one line, a training state this run cannot continue exactly."""
    if state["world_size"] != world_size:
        raise GptlabError(
            f"{source} was written by {state['world_size']} process(es); resume it with the same number"
        )
    saved_optimizer = saved_optimizer_name(state["optimizer"])
    if saved_optimizer != optimizer:
        raise GptlabError(
            f"{source} holds the state of train.optimizer={saved_optimizer}, not "
            f"{optimizer}; resume with train.optimizer={saved_optimizer}"
        )


def restore_training_state(state: dict, *, rank: int, optimizer, scaler, loader) -> None:
    """Put the optimizer, scaler, this rank's RNGs and loader back where the checkpoint left them."""
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["ranks"][rank]["rng"])
    loader.load_state_dict(state["ranks"][rank]["loader"])
