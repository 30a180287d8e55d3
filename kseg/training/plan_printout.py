"""`kseg fit --dry-run`'s printout: a FitPlan as labelled lines that fit in 80 columns."""

import textwrap

LABEL = 13  # the label column: two spaces, "validation" and a space


def plan_lines(plan, width=80):
    """What the run will do, one topic a line (long values wrap under their label)."""
    cfg = plan.config
    rows = [("run", _run_line(plan)), ("folder", str(plan.run.path)), ("network", _network(plan)),
            ("data", _data(plan)), ("", plan.data_summary), ("task", _task(plan)), ("patches", _patches(cfg)),
            ("augment", _augment(cfg)), ("batches", _batches(plan)), ("validation", _validation(plan)),
            ("epochs", f"{cfg.epochs}, seed {cfg.seed}"), ("loss", _loss(cfg)),
            ("optimizer", _optimizer(plan)), ("schedule", _schedule(cfg)),
            ("monitor", f"{cfg.monitor} ({cfg.monitor_mode}) for best.keras")]
    hw = plan.hardware
    rows += [("precision", f"{hw.precision} ({hw.precision_reason})"), ("XLA", f"{hw.xla} ({hw.jit_reason})"),
             ("workers", f"{hw.workers} data workers ({hw.workers_reason})"), ("devices", _devices(plan))]
    if hw.onednn_state is not None:
        rows.insert(-1, ("oneDNN", f"{hw.onednn_state} ({hw.onednn_reason})"))
    rows += [("warning", note) for note in plan.notes]
    lines = [f"kseg fit {cfg.arch} --dry-run: the plan (nothing was written)"]
    for label, value in rows:
        lines += textwrap.wrap(value, width, initial_indent=f"  {label:<{LABEL - 2}}",
                               subsequent_indent=" " * LABEL, break_on_hyphens=False,
                               break_long_words=False)  # a path stays whole, longer or not
    return lines


def _run_line(plan):
    if plan.saved is None:
        return f"a new run, epochs 1 to {plan.config.epochs}"
    verb = "extends" if plan.saved.state.status == "finished" else "continues"
    return (f"{verb} the run after epoch {plan.first_epoch} (was {plan.saved.state.status}), "
            f"epochs {plan.first_epoch + 1} to {plan.config.epochs}")


def _network(plan):
    cfg = plan.config
    parts = [f"{cfg.arch}, output stride {plan.stride}, {cfg.channels} input channels"]
    parts += [f"--model-arg {key}={value}" for key, value in cfg.model_kwargs.items()]
    if cfg.encoder_weights:
        parts.append(f"encoder weights {cfg.encoder_weights}")
    if cfg.init_from:
        parts.append(f"starts from {cfg.init_from}")
    if cfg.freeze_encoder_epochs or cfg.encoder_lr_mult != 1:
        parts.append(f"encoder frozen {cfg.freeze_encoder_epochs} epochs, then at "
                     f"{cfg.encoder_lr_mult} x the rate")
    return "; ".join(parts)


def _data(plan):
    dataset = plan.dataset
    splits = ", ".join(f"{split} {len(pairs)}" for split, pairs in dataset.splits.items())
    where = "the embedded synthetic scenes" if plan.data_label == "synthetic" else plan.data_label
    return f"{where} ({dataset.layout} layout), image/mask pairs: {splits}"


def _task(plan):
    spec = plan.dataset.spec
    classes = ", ".join(spec.classes)
    void = "no void" if spec.void is None else f"void {spec.void} (never counted)"
    return f"{plan.config.task}, {spec.num_classes} classes ({classes}), {void}"


def _patches(cfg):
    if cfg.grid is not None:
        return f"{cfg.patch} px, each cell of a {cfg.grid[0]}x{cfg.grid[1]} grid of every frame, resized"
    text = f"{cfg.patch} px, {cfg.crops_per_image} random native-resolution crops of every frame"
    if cfg.scale:
        text += f", scale jitter {cfg.scale[0]}:{cfg.scale[1]}"
    if cfg.class_uniform:
        text += f", {cfg.class_uniform:g} of them centred on a class drawn uniformly"
    return text


def _augment(cfg):
    parts = []
    if cfg.augment:
        parts.append("rotation, shifts and flips" + (f" {dict(cfg.augment)}" if isinstance(cfg.augment, dict)
                                                      else ""))
    if cfg.photometric:
        parts.append("brightness, contrast, saturation and gamma")
    return "; ".join(parts) or "none"


def _batches(plan):
    size = plan.epoch
    cap = f" (max_steps {plan.max_steps})" if plan.max_steps else ""
    return (f"{plan.config.batch_size} patches a batch, {size.batches[0]} steps per epoch{cap}: "
            f"{size.patches[0]} patches of {size.frames[0]} train frames")


def _validation(plan):
    size = plan.epoch
    source = (f"{size.frames[1]} val frames" if size.frames[1] is not None
              else "20 % of the train patches (--split 80/20)")
    return f"{size.batches[1]} steps: {size.patches[1]} patches of {source}"


def _loss(cfg):
    return cfg.loss + (", median-frequency class weights" if cfg.class_weights else "")


def _optimizer(plan):
    cfg = plan.config
    text = f"Adam, lr {cfg.lr:g}"
    if cfg.weight_decay > 0:
        text = f"AdamW, lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}"
    rate = plan.saved.state.lr if plan.saved is not None else None
    return text if rate is None else f"{text}; continues at lr {rate:g}"


def _schedule(cfg):
    text = cfg.schedule
    if cfg.schedule == "plateau":
        text += (f" (lr x {cfg.plateau_factor:g} after {cfg.plateau_patience} epochs without "
                 f"val_loss progress)")
    if cfg.warmup_epochs:
        text += f", linear warmup over {cfg.warmup_epochs:g} epochs"
    return text


def _devices(plan):
    topo = plan.topology
    if topo is None:
        return "one device (no --distribute)"
    return (f"{topo['strategy']} ({topo['backend']}), worker {topo['worker']} of {topo['workers']}, "
            f"{topo['replicas']} replicas, {topo['per_replica_batch']} patches a replica")
