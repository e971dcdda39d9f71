"""`initialize(model, modality=...)`: predict a model's initial weights and write them in place."""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperinit.deferred import DeferredInit
from hyperinit.errors import CheckpointError, HyperInitError, NoParametersError
from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.trace import trace
from hyperinit.hfenv import endpoint
from hyperinit.hub import default_cache_dir, is_offline, resolve_checkpoint, resolve_pretrained
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.hypernet.roles import PREDICTED_ROLES, assign_roles
from hyperinit.init_report import InitReport
from hyperinit.materialize import allocate_meta, is_on_meta, materialize_lazy, plan_meta
from hyperinit.modalities import get_modality
from hyperinit.postprocess import (
    PostProcess,
    depthwise_weights,
    zero_init_last_norms,
    zero_init_norm_weights,
)
from hyperinit.selection import excluded_parameters, head_parameters

__all__ = ["clear_cache", "initialize", "initialize_deferred", "load_hypernetwork"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _load_cached(path: str, device: str) -> HyperInitializer:
    # building the module draws its default init from the global RNG: keep that private, so
    # that a seed drawn from torch.manual_seed's stream does not depend on a warm cache
    with torch.random.fork_rng(devices=[]):
        return HyperInitializer._from_directory(path, device=device)


@lru_cache(maxsize=32)
def _resolve_cached(
    modality: str,
    revision: str | None,
    cache_dir: str,
    local_files_only: bool,
    endpoint: str | None,
) -> tuple[Path, str]:
    """Resolve a modality once per process and setting: a dead network costs one timeout."""
    del endpoint  # part of the key only
    return resolve_checkpoint(
        modality, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only
    )


def clear_cache() -> None:
    """Forget the hypernetworks loaded and the modalities resolved in this process, e.g. after
    changing ``HF_ENDPOINT``, the Hub cache or ``HF_HUB_OFFLINE`` at run time."""
    _resolve_cached.cache_clear()
    _load_cached.cache_clear()


def load_hypernetwork(
    modality: str = "xray",
    checkpoint: str | Path | HyperInitializer | None = None,
    device: torch.device | str = "cpu",
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> tuple[HyperInitializer, str]:
    """The hypernetwork for a modality (or an explicit checkpoint) and a description of it.

    ``checkpoint`` may be a :class:`HyperInitializer`, a local directory (always wins) or a Hub
    repo id. A modality resolves through the Hub cache, then the Hub, then the copy embedded in
    the package (see :mod:`hyperinit.hub`); offline or without network it still loads.
    """
    if isinstance(checkpoint, HyperInitializer):
        return checkpoint, "HyperInitializer instance"
    if checkpoint is not None:
        folder, source = resolve_pretrained(
            checkpoint,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            modalities=False,
        )
        if not source.startswith("hub:"):
            folder = folder.resolve()
            if not folder.exists():
                raise CheckpointError(
                    f"checkpoint {checkpoint} does not exist. Pass a directory written by "
                    "HyperInitializer.save_pretrained() or a Hub repo id (owner/name), or omit "
                    "checkpoint= to use the modality's."
                )
            source = str(folder)
        return _load_cached(str(folder), str(device)), source
    entry = get_modality(modality)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    offline = is_offline() if local_files_only is None else bool(local_files_only)
    folder, source = _resolve_cached(entry.name, revision, str(cache), offline, endpoint())
    kind = "trained" if entry.trained else "untrained reference"
    return _load_cached(str(folder), str(device)), f"{source} ({kind})"


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _resolve_seed(seed: int | None) -> int:
    if seed is not None:
        return int(seed)
    return int(torch.randint(0, 2**31 - 1, (1,)).item())  # follows torch.manual_seed


def _post(options: PostProcess | Mapping[str, Any]) -> PostProcess:
    if isinstance(options, PostProcess):
        return options
    if not isinstance(options, Mapping):
        raise TypeError(
            "postprocess= takes a PostProcess or a dict of its options, got "
            f"{type(options).__name__}"
        )
    try:
        return PostProcess.from_dict(options, source="postprocess=", fix="Fix the argument")
    except CheckpointError as e:
        raise ValueError(str(e)) from None


def _check_finite(preds: dict[str, torch.Tensor]) -> None:
    if not preds:
        return
    sums = torch.stack([t.float().sum() for t in preds.values()])
    if bool(torch.isfinite(sums).all()):
        return
    bad = [n for n, t in preds.items() if not bool(torch.isfinite(t).all())]
    if bad:
        raise HyperInitError(
            f"the hypernetwork predicted non-finite values for {bad[:5]}; the checkpoint may be "
            "corrupted. The model was not changed. Try another checkpoint or report the model."
        )


def _assign(model: nn.Module, preds: dict[str, torch.Tensor]) -> None:
    """Swap predicted tensors into the parameters; all or nothing."""
    params = dict(model.named_parameters())
    staged: list[tuple[nn.Parameter, torch.Tensor]] = []
    for name, value in preds.items():
        p = params[name]
        new = value.detach().to(device=p.device, dtype=p.dtype)
        if new.stride() != p.stride():  # e.g. channels_last
            new = torch.empty_like(p).copy_(new)
        staged.append((p, new))
    done: list[tuple[nn.Parameter, torch.Tensor]] = []
    try:
        for p, new in staged:
            old = p.data
            p.data = new
            done.append((p, old))
    except BaseException:
        for p, old in reversed(done):
            p.data = old
        raise


@contextmanager
def _train_mode(model: nn.Module) -> Iterator[None]:
    flags = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _trace_all_branches(model: nn.Module, example_input: Any, s_max: int) -> ArchGraph:
    """Trace; if parameters went unused in eval mode (auxiliary heads of GoogLeNet and
    Inception run only in training), trace again in train mode and keep the fuller graph."""
    graph = trace(model, example_input, s_max=s_max)
    if graph.unbound and not model.training:
        try:
            with _train_mode(model):
                train_graph = trace(model, example_input, s_max=s_max)
        except HyperInitError:
            return graph
        if len(train_graph.unbound) < len(graph.unbound):
            return train_graph
    return graph


def _zero_init_norms(
    model: nn.Module,
    norms: set[str],
    post: PostProcess,
    deferred: DeferredInit | None,
    on_meta: bool,
) -> set[str]:
    """Of the predicted norm weights ``norms``, those the model's own init zeroes, when
    ``post.residual_scale`` needs them: those its blocks' ``zero_init_last()`` zeroes (timm),
    and those that are zero after its init (in a deferred build their recorded init is run
    first; on the meta device only the first kind is known)."""
    if post.residual_scale == 1:
        if not on_meta and deferred is None:  # remembered for a later call that damps
            _remember_zero_init(model, norms)
        return set()
    structural = zero_init_last_norms(model, norms)
    if on_meta:
        if not structural:
            log.warning(
                "residual_scale=%g: the model is on the meta device and has no timm "
                "zero_init_last(), so its own init is unknown and no norm is scaled; build it "
                "on a real device (or with hyperinit.create_model)",
                post.residual_scale,
            )
        return structural
    if deferred is not None:
        params = dict(model.named_parameters())
        deferred.replay([params[n] for n in norms - structural if n in params], keep_others=True)
    return structural | _remember_zero_init(model, norms)


def _remember_zero_init(model: nn.Module, norms: set[str]) -> set[str]:
    """The norms of ``norms`` whose weight is all zero now or was at an earlier call (a model
    initialised before no longer shows its own init's zeros: torchvision's
    ``zero_init_residual``, a user's own init)."""
    seen = _ZERO_INIT_SEEN.get(model, set())
    found = zero_init_norm_weights(model, norms) | (seen & norms)
    _ZERO_INIT_SEEN[model] = seen | found
    return found


#: the norms each model's own init zeroed, as found the first time it was initialised
_ZERO_INIT_SEEN: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


#: set by :func:`initialize_deferred` for the one call it makes
_DEFERRED: ContextVar[DeferredInit | None] = ContextVar("hyperinit_deferred", default=None)


def initialize_deferred(
    model: nn.Module, modality: str, deferred: DeferredInit, **kwargs: Any
) -> InitReport:
    """:func:`initialize` for a model built in a :func:`~hyperinit.deferred.deferred_init`
    block: only the parameters that are not predicted get their deferred default init (and if
    the forward pass depends on values, all of them before it is traced)."""
    token = _DEFERRED.set(deferred)
    try:
        return initialize(model, modality, **kwargs)
    finally:
        _DEFERRED.reset(token)


def initialize(
    model: nn.Module,
    modality: str = "xray",
    *,
    checkpoint: str | Path | HyperInitializer | None = None,
    example_input: Any = None,
    exclude: str | Iterable[str] | None = None,
    predict_head: bool = False,
    device: torch.device | str | None = None,
    seed: int | None = None,
    sample: Any = None,
    postprocess: PostProcess | Mapping[str, Any] | None = None,
) -> InitReport:
    """Predict initial weights for ``model`` with the modality's hypernetwork, in place.

    Args:
        model: any ``nn.Module`` that runs a forward pass (timm, torchvision, your own).
        modality: ``xray``, ``ct``, ``ultrasound``, ``dermoscopy``, ``fundus``, ``mixed`` or an
            alias (``cxr``, ``us``, ``derm``...), or ``auto``: the modality whose reference
            images are closest to ``sample`` (convolution-based modality distance, see
            :func:`hyperinit.modality_distance`); the report lists the distances.
        checkpoint: a checkpoint directory or a :class:`HyperInitializer`; overrides modality.
        example_input: what to run the forward pass on (see :func:`hyperinit.trace`).
        exclude: parameter names, module names or regular expressions to leave untouched.
        predict_head: also predict the classification head (kept at its init by default).
        device: where the hypernetwork runs; defaults to the model's device.
        seed: seeds the prediction; by default drawn from torch's global RNG, so
            ``torch.manual_seed`` makes runs repeatable. The report records it.
        sample: with ``modality="auto"``, some of your images: a tensor ``(N, C, H, W)``, a
            folder, a list of files or a dataset (a few dozen are plenty).
        postprocess: overrides the checkpoint's post-processing of the predictions for this
            call: a :class:`~hyperinit.postprocess.PostProcess` or its options as a dict
            (``{"orthogonalize": True}``); ``{}`` writes the raw predictions.

    Lazy modules (``nn.LazyConv2d``...) are materialised first by one forward pass on
    ``example_input`` (required then). A model built on the meta device gets real tensors on
    ``device`` (default CPU): predicted ones from the hypernetwork, the others from their
    layer's ``reset_parameters()`` and batch-norm statistics from ``reset_running_stats()``;
    if some tensor cannot be rebuilt exactly, :class:`~hyperinit.errors.MetaDeviceError` says
    which before anything is changed.

    Returns:
        An :class:`InitReport`. On any error the model is left exactly as it was (apart from
        materialised lazy modules, which is what any first forward pass does).
    """
    deferred = _DEFERRED.get()
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"initialize() expects an nn.Module, got {type(model).__name__}")
    all_params = dict(model.named_parameters())
    if not all_params:
        raise NoParametersError(
            f"{type(model).__name__} has no parameters, so there is nothing to initialise. "
            "Pass the model that holds the layers (not a functional wrapper or a buffer-only "
            "module)."
        )
    if materialize_lazy(model, example_input):
        all_params = dict(model.named_parameters())
    on_meta = is_on_meta(model)
    device = torch.device(device) if device is not None else _model_device(model)
    if on_meta and device.type == "meta":
        device = torch.device("cpu")  # where the parameters will be allocated
    distances: dict[str, float] = {}
    if checkpoint is None and str(modality).strip().lower() == "auto":
        if sample is None:
            raise HyperInitError(
                'modality="auto" needs sample=: a few of your images (a tensor, a folder, a list '
                "of files or a dataset) to compare with each modality's reference images."
            )
        from hyperinit.modality_auto import choose_modality

        modality, distances = choose_modality(sample)
    hypernet, source = load_hypernetwork(modality, checkpoint, device)
    post = hypernet.config.post_process() if postprocess is None else _post(postprocess)
    seed = _resolve_seed(seed)

    graph = _trace_all_branches(model, example_input, hypernet.config.s_max)
    if deferred is not None and graph.traced_as == "real":
        # the forward pass depends on values: trace it on the default init, not on empty memory
        deferred.replay()
        graph = _trace_all_branches(model, example_input, hypernet.config.s_max)
    t_trace = time.perf_counter()

    head = set() if predict_head else head_parameters(model, graph)
    excluded = excluded_parameters(all_params, exclude)
    param_roles = assign_roles(graph)
    roles = {r.name: r.role for r in param_roles}
    kept: dict[str, str] = {}
    wanted: set[str] = set()
    for name in all_params:
        if name in head:
            kept[name] = "head"
        elif name in excluded:
            kept[name] = "excluded"
        elif name not in graph.param_owner:
            kept[name] = "unused in forward"
        elif roles.get(name) not in PREDICTED_ROLES:
            kept[name] = f"role '{roles.get(name)}'"
        elif roles.get(name) in post.kept_roles:
            kept[name] = f"postprocess: {post.norm_weights} {roles.get(name)}"
        else:
            wanted.add(name)

    plan = plan_meta(model, wanted) if on_meta else None  # refuses before any change
    with torch.no_grad():
        preds = hypernet.predict_params(graph, names=wanted, seed=seed, roles=param_roles)
        depthwise = depthwise_weights(model) if post.orthogonalize == "depthwise" else ()
        norms = {n for n in wanted if roles.get(n) == "norm_weight"}
        zero_init = _zero_init_norms(model, norms, post, deferred, on_meta)
        preds = post.apply(preds, roles, seed=seed, depthwise=depthwise, zero_init=zero_init)
        _check_finite(preds)
    t_predict = time.perf_counter()
    if plan is not None:
        allocate_meta(model, plan, device)
        all_params = dict(model.named_parameters())
    if deferred is not None:
        deferred.replay([p for n, p in all_params.items() if n not in preds])
    _assign(model, preds)
    t_assign = time.perf_counter()

    report = InitReport(
        model=type(model).__name__,
        modality=get_modality(modality).name
        if checkpoint is None
        else str(hypernet.config.modality or "none"),  # the checkpoint's, not the default
        checkpoint=source,
        seed=seed,
        device=str(device),
        predicted=[n for n in all_params if n in preds],
        kept=kept,
        predicted_elements=sum(t.numel() for t in preds.values()),
        total_elements=sum(p.numel() for p in all_params.values()),
        head_elements=sum(all_params[n].numel() for n in head),
        timings={
            "trace": t_trace - start,
            "predict": t_predict - t_trace,
            "assign": t_assign - t_predict,
            "total": t_assign - start,
        },
        graph={
            "nodes": len(graph),
            "edges": graph.num_edges,
            "traced_as": graph.traced_as,
            **({"note": graph.meta["trace_note"]} if "trace_note" in graph.meta else {}),
        },
        modality_distances=distances,
        postprocess={} if post.is_identity else post.to_dict(),
    )
    log.info("%s", report)
    return report
