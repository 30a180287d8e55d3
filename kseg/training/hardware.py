"""Settings chosen from the machine at hand: `--precision auto` and `--jit auto`, with
`--workers auto` and `--worker-kind auto` (`pick_workers`), as one `HardwareChoice`.

Measured on this project's 2-core AMD EPYC with AVX-512 BF16 (issue 12's table): a
U-Net train step runs 1.34x faster in mixed_bfloat16 than in float32, and XLA makes it
0.8x (XLA's CPU path loses oneDNN); on an AVX2 CPU without bfloat16 units mixed
precision ran 6-10x slower (benchmarks/LOG.md). Hence bfloat16 only where the
hardware has it natively. XLA stays off on every CPU: where TensorFlow runs without
oneDNN it trains U-Net 1.27x faster but DeepLabV3 2.4x slower, and with oneDNN it
is slower for every network; under XLA `kseg fit` gives up op determinism.

TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512_VNNI,
AVX512_BF16 or AMX. On a CPU with AVX2 and none of those, oneDNN's AVX2 kernels train
each network measured 1.2-1.7x faster than TensorFlow's own (Eigen) kernels, but
predict one 360x480 frame 8-48% slower (float32, in pairs, benchmarks/probes/
cpu_defaults.py). So `kseg fit` and `kseg bench` turn oneDNN on there (`pick_onednn`),
before TensorFlow starts; the other commands keep TensorFlow's default. One inter-op
thread instead of one per core was no faster. TF_ENABLE_ONEDNN_OPTS, when set, wins.
"""

import dataclasses
import os
import sys

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
AMPERE = (8, 0)  # first NVIDIA compute capability with bfloat16 tensor cores
TF_ONEDNN_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile")  # TensorFlow turns oneDNN on for these
ONEDNN_COMMANDS = ("fit", "bench")  # the commands that train: oneDNN on wherever the CPU has AVX2
MAX_PROCESSES = 16  # auto's worker processes: a GPU's appetite (about 8,000 patches/s) at ~550 per core


def gpus():
    """[(name, (major, minor) or None)] of the GPUs the current Keras backend sees."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax_gpus(jax.devices())
    if backend == "torch":
        import torch

        return [(torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
                for i in range(torch.cuda.device_count())]
    if backend != "tensorflow":
        return []
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return out


def jax_gpus(devices):
    """`gpus()` of JAX devices. A CUDA device's `compute_capability` is text ("9.0") in the
    jaxlib releases read, a pair in some; anything else is recorded as unknown (None)."""
    out = []
    for device in devices:
        if device.platform != "gpu":
            continue
        found = getattr(device, "compute_capability", None)
        parts = str(found).split(".") if isinstance(found, str) else list(found or ())
        try:
            capability = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
        except (IndexError, TypeError, ValueError):
            capability = None
        out.append((device.device_kind, capability))
    return out


def pick_precision(requested, cpu_flags, gpu_list, onednn=True):
    """`(precision, reason)`: `requested` itself, or for "auto" bfloat16 where it is native.

    On a CPU, native means bfloat16 units AND oneDNN's kernels to use them: TensorFlow's
    own (Eigen) bfloat16 kernels, what runs with TF_ENABLE_ONEDNN_OPTS=0, are slower than
    float32 even on such a CPU. `onednn`: None where unknown (JAX, torch), kept as native.
    """
    if requested == "mixed_float16" and not gpu_list:
        return requested, ("asked for; no GPU is visible, and float16 has no fast CPU kernels: "
                           "expect a train step many times slower than float32")
    if requested != "auto":
        return requested, "asked for"
    if gpu_list:
        name, capability = gpu_list[0]
        if capability and tuple(capability) >= AMPERE:
            return "mixed_bfloat16", f"auto: {name} has bfloat16 units"
        return "float32", f"auto: {name} has no bfloat16 units"
    native = [f for f in BF16_CPU_FLAGS if f in (cpu_flags or ())]
    if native and onednn is False:
        return "float32", (f"auto: this CPU has {native[0].upper()}, but TensorFlow runs without oneDNN "
                           f"here, whose bfloat16 kernels it would need")
    if native:
        return "mixed_bfloat16", f"auto: this CPU has {native[0].upper()}"
    return "float32", "auto: this CPU has no native bfloat16"


def pick_jit(requested, gpu_list, backend="tensorflow", onednn=True):
    """`(jit, reason)`: XLA on GPUs, off on CPUs, unless asked. `onednn`: whether
    TensorFlow runs oneDNN's kernels here (environment.onednn), which XLA gives up.

    Only TensorFlow has that choice: JAX always compiles (jit_compile=False would run
    eagerly) and Keras' torch backend does not compile; both keep Keras' "auto" (None).
    """
    if requested is not None:
        return requested, "asked for"
    if backend != "tensorflow":
        return None, f"auto: Keras' default for {backend}"
    if gpu_list:
        return True, "auto: a GPU is visible"
    if onednn is False:  # 2-core AVX2 CPU: U-Net 1.27x faster with XLA, DeepLabV3 2.4x slower
        return False, ("auto: off on CPUs; without oneDNN, as here, --jit trains U-Net about 1.3x "
                       "faster (not DeepLabV3) but without op determinism")
    return False, "auto: off on CPUs, where XLA is slower than oneDNN's kernels"


def pick_onednn(command, cpu_flags, environ, backend="tensorflow"):
    """`(value, reason)`: what `kseg COMMAND` sets TF_ENABLE_ONEDNN_OPTS to on a CPU with
    `cpu_flags` (environment.cpu_info; None where unknown), or `(None, reason)` to leave
    TensorFlow's default. `environ`: the variables, where the user's own setting wins."""
    if backend != "tensorflow":
        return None, f"not TensorFlow ({backend})"
    if "TF_ENABLE_ONEDNN_OPTS" in environ:
        return None, f"TF_ENABLE_ONEDNN_OPTS={environ['TF_ENABLE_ONEDNN_OPTS']}"
    flags = set(cpu_flags or ())
    if flags & set(TF_ONEDNN_FLAGS):
        return None, "TensorFlow's default on this CPU"
    if "avx2" not in flags:
        return None, "TensorFlow's default"
    if command not in ONEDNN_COMMANDS:
        return None, ("TensorFlow's default: off on a CPU without AVX-512 VNNI or BF16, where "
                      "TensorFlow's own kernels predict a frame faster")
    return "1", ("kseg's default for training on a CPU with AVX2 but no AVX-512 VNNI or BF16: "
                 "1.2-1.7x faster than TensorFlow's own kernels; TF_ENABLE_ONEDNN_OPTS=0 turns it off")


def set_onednn(command, environ=os.environ):
    """Set TF_ENABLE_ONEDNN_OPTS for `kseg command` (`pick_onednn`), unless TensorFlow is
    imported already (it reads the variable once, at start-up). The entry point of the
    command calls this; `onednn_reason` then gives the reason."""
    from kseg.quiet import keras_backend
    from kseg.training.environment import cpu_info

    if "tensorflow" in sys.modules:
        return
    value, reason = pick_onednn(command, cpu_info()["flags"], environ, keras_backend())
    if value is not None:
        environ["TF_ENABLE_ONEDNN_OPTS"] = value
        _ONEDNN_SET[:] = [reason]


_ONEDNN_SET = []  # the reason, once set_onednn has set TF_ENABLE_ONEDNN_OPTS in this process


def onednn_reason(on, cpu_flags, environ=os.environ):
    """Why TensorFlow runs oneDNN's kernels (`on`: environment.onednn) in this process, or not."""
    if on is None:
        return "not used by this backend"
    if _ONEDNN_SET:
        return _ONEDNN_SET[0]
    if "TF_ENABLE_ONEDNN_OPTS" in environ:
        return f"TF_ENABLE_ONEDNN_OPTS={environ['TF_ENABLE_ONEDNN_OPTS']}"
    if not on and "avx2" in (cpu_flags or ()):
        return ("TensorFlow's default here; TF_ENABLE_ONEDNN_OPTS=1, set before TensorFlow is "
                "imported, trains 1.2-1.7x faster (the kseg command sets it)")
    return "TensorFlow's default on this CPU"


def pick_workers(requested, cpus=None, kind="auto", gpu_list=None):
    """`(workers, reason)`: how many build batches for `--workers requested`, of
    `--worker-kind kind` (see `worker_kind`; `gpu_list`: `gpus()`, found when None).

    Processes (kseg.data.batch_pool) each take a core and together build about as many
    patches per second as there are workers; auto is min(CPUs - 2, 16): one core stays
    with the training process, which feeds the GPU and copies each batch out of shared
    memory, one with the framework's own threads. Threads share one GIL: 2 build 0.94x
    as many patches as 1. For threads auto is min(4, CPUs // 2), and 0 below 4 CPUs: half
    the cores stay with the framework (a CPU train step uses every core), Keras starts
    its thread pool only from 2 workers (1 builds batches as 0 does), and more than 4
    add memory (queued batches) more than speed. With none, TensorFlow's tf.data still
    builds the next batch while a step runs; JAX and torch build it in the training
    thread. `make bench-pipeline` measures the scaling.
    """
    return count_workers(requested, *worker_kind(kind, gpu_list), cpus)


def count_workers(requested, kind, why, cpus=None):
    """`(workers, reason)` for `--workers requested` of a resolved `kind` ("process" or
    "thread", chosen for reason `why`): see `pick_workers`."""
    if requested != "auto":
        return int(requested), f"asked for: {'processes' if kind == 'process' else 'threads'}"
    cpus = cpus or os.cpu_count() or 1
    if kind == "process":
        return max(0, min(cpus - 2, MAX_PROCESSES)), f"auto: {why}: min({cpus} CPUs - 2, 16) worker processes"
    workers = min(4, cpus // 2)
    if workers < 2:
        return 0, f"auto: {cpus} CPUs, all for the train step"
    return workers, f"auto: min(4, {cpus} CPUs // 2) threads"


def worker_kind(requested="auto", gpu_list=None):
    """`(kind, why)`: "process" or "thread" for `--worker-kind requested`; auto picks
    processes where a GPU is visible (`gpus()`, or `gpu_list`): a GPU trains several
    times faster than threads build batches. Without one the train step uses every core,
    and threads cost no start-up and no memory of their own."""
    if requested != "auto":
        return requested, "asked for"
    from kseg.data.batch_pool import unsupported

    if gpu_list is None:
        gpu_list = gpus()
    if not gpu_list:
        return "thread", "no GPU"
    if trouble := unsupported():
        return "thread", f"a GPU is visible, but {trouble}"
    return "process", f"a GPU is visible ({gpu_list[0][0]})"


@dataclasses.dataclass(frozen=True)
class HardwareChoice:
    """What `kseg fit` runs on, each with its reason: the precision, XLA (None: Keras'
    "auto") and the workers building batches, processes or threads (`worker_kind`).
    env.json records it as "chosen"."""

    precision: str
    precision_reason: str
    jit: bool | None
    jit_reason: str
    workers: int
    workers_reason: str
    worker_kind: str = "thread"
    onednn: bool | None = None
    onednn_reason: str = ""

    @property
    def xla(self):
        """"on", "off" or "auto" (Keras decides)."""
        return {True: "on", False: "off", None: "auto"}[self.jit]

    @property
    def onednn_state(self):
        """"on" or "off"; None off TensorFlow."""
        return {True: "on", False: "off", None: None}[self.onednn]

    def line(self):
        """The console line `kseg fit` prints before training."""
        line = (f"precision {self.precision} ({self.precision_reason}), XLA {self.xla} ({self.jit_reason}), "
                f"{self.workers} data workers ({self.workers_reason})")
        if self.onednn_state is None:
            return line
        return line + f", oneDNN {self.onednn_state} ({self.onednn_reason})"


def choose(cfg):
    """The `HardwareChoice` for `cfg`'s --precision, --jit and --workers on this machine."""
    import keras

    from kseg.training.environment import cpu_info, onednn
    found, backend = gpus(), keras.backend.backend()
    uses_onednn, flags = onednn(backend), cpu_info()["flags"]
    precision, why_precision = pick_precision(cfg.precision, flags, found, uses_onednn)
    jit, why_jit = pick_jit(cfg.jit, found, backend, uses_onednn)
    kind, why_kind = worker_kind(cfg.worker_kind, found)
    workers, why_workers = count_workers(cfg.workers, kind, why_kind)
    return HardwareChoice(precision, why_precision, jit, why_jit, workers, why_workers, kind,
                          uses_onednn, onednn_reason(uses_onednn, flags))
