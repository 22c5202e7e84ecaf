"""What a resumed run needs besides the weights: the training state.

    training_state.pt (in each checkpoint, beside the model folder's files)
        optimizer    the optimizer's state_dict (AdamW, or Muon + AdamW as one OptimizerPair);
                     under FSDP the full state gathered onto rank 0, keyed by parameter names
        distributed  train.distributed of the run that wrote it ("ddp" or "fsdp")
        scaler       the grad scaler's state_dict (float16 loss scaling)
        world_size   how many processes wrote it (a resume must use as many)
        ranks        per process: every random number generator's state and the loader position
        weight_average  (train.weight_average) the running average: kind, count, tensors
        raw_weights  (the last checkpoint of an averaging run, whose model file holds the
                     average) the raw weights, which a resumed run goes on training

It is read back with torch.load(weights_only=True), so it holds tensors and plain values only
(gptlab.rng turns NumPy's generator state into a tensor).
"""

from __future__ import annotations

from gptlab.errors import GptlabError
from gptlab.rng import capture_rng_state, restore_rng_state
from gptlab.train.distributed import load_gathered_optimizer_state
from gptlab.train.optim import saved_optimizer_name


def rank_state(loader) -> dict:
    """This process's part of the training state: its RNGs and its loader's position."""
    return {"rng": capture_rng_state(), "loader": loader.state_dict()}


def training_state(
    optimizer_state: dict,
    scaler,
    rank_states: list[dict],
    distributed: str,
    *,
    weight_average=None,
    raw_weights: dict | None = None,
) -> dict:
    state = {
        "optimizer": optimizer_state,
        "scaler": scaler.state_dict(),
        "distributed": distributed,
        "world_size": len(rank_states),
        "ranks": rank_states,
    }
    if weight_average is not None:
        state["weight_average"] = weight_average.state_dict()
    if raw_weights is not None:
        state["raw_weights"] = raw_weights
    return state


def check_resumable(
    state: dict, source: str, *, world_size: int, optimizer: str, distributed: str
) -> None:
    """Refuse, in one line, a training state this run cannot continue exactly."""
    if state["world_size"] != world_size:
        raise GptlabError(
            f"{source} was written by {state['world_size']} process(es); resume it with the same number"
        )
    # Checkpoints from before train.distributed existed were all written by DDP (or 1 process).
    saved_distributed = state.get("distributed", "ddp")
    if world_size > 1 and saved_distributed != distributed:
        raise GptlabError(
            f"{source} was written with train.distributed={saved_distributed}; resume with "
            f"train.distributed={saved_distributed}"
        )
    saved_optimizer = saved_optimizer_name(state["optimizer"])
    if saved_optimizer != optimizer:
        raise GptlabError(
            f"{source} holds the state of train.optimizer={saved_optimizer}, not "
            f"{optimizer}; resume with train.optimizer={saved_optimizer}"
        )


def check_same_rate_groups(saved: dict, optimizer) -> None:
    """Refuse, in one line, a state whose AdamW groups were split by other rates per kind
    (train.embed_lr_scale, head_lr_scale, scalar_lr_scale): their moments could not be matched
    to this run's groups."""
    adamw_state = saved["adamw"] if saved_optimizer_name(saved) == "muon" else saved
    adamw = getattr(optimizer, "adamw", optimizer)
    saved_scales = [group.get("lr_scale", 1.0) for group in adamw_state["param_groups"]]
    scales = [group["lr_scale"] for group in adamw.param_groups]
    if saved_scales != scales:
        raise GptlabError(
            f"the run was trained with AdamW rate multiples {saved_scales} per parameter group, "
            f"this one asks for {scales}; resume with the train.embed_lr_scale, head_lr_scale "
            "and scalar_lr_scale the run was trained with (its config.toml)"
        )


def restore_training_state(
    state: dict, *, rank: int, optimizer, scaler, loader, sharded_model=None
) -> None:
    """Put the optimizer, scaler, this rank's RNGs and loader back where the checkpoint left them.

    sharded_model: the FSDP-sharded model, whose optimizer state is the gathered full one.
    """
    check_same_rate_groups(state["optimizer"], optimizer)
    if sharded_model is not None:
        load_gathered_optimizer_state(sharded_model, optimizer, state["optimizer"])
    else:
        optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["ranks"][rank]["rng"])
    loader.load_state_dict(state["ranks"][rank]["loader"])
