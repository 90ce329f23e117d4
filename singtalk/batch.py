"""Many inputs at once: across this machine's cores, or on a Ray cluster.

Two jobs scale out: feature extraction for a labelled set (:func:`cluster_features`,
used by :func:`singtalk.dataset.extract_each`) and batch classification
(:func:`classify_many`, used by ``singtalk classify``). Locally, classification
runs in a pool of worker processes, each holding the same model version; on a
cluster (``address`` = ``HOST:PORT`` of a running Ray head), Ray tasks extract
features and Ray actors classify.

Nothing on a cluster node needs this checkout's files: the ``singtalk`` package
is shipped with the job (Ray ``py_modules``), the model version's files (its NumPy copy too) are
shipped to each actor, and an input that a node cannot see at the same path is
shipped as bytes. A node needs the same Python packages (``requirements.lock``),
ffmpeg, and for ``--separate`` the Spleeter weights (``make setup``).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .classify import classify_safely
from .errors import ModelError, SingtalkError

Progress = Callable[[int, int], None]
Outcome = tuple  # (source, Prediction | None, error message)

IN_FLIGHT_PER_CPU = 4
"""Cluster tasks queued per CPU: keeps every worker busy while bounding the bytes held in the object store."""


# -- the cluster ------------------------------------------------------------
_CONNECTED: dict = {}

class ClusterUnavailable(SingtalkError):
    """No Ray cluster answers at the given address."""


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.strip().removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(f"{address!r} is not a cluster address: give HOST:PORT of the Ray head, "
                                 "e.g. 127.0.0.1:6379.")
    return host, int(port)


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``HOST:PORT``) as a driver, once per process.

    Raises :class:`ClusterUnavailable` when nothing listens there (checked
    before Ray's own, much slower, retries).
    """
    import ray

    host, port = _split_address(address)
    if ray.is_initialized():
        if _CONNECTED.get("address") == (host, port):
            return
        ray.shutdown()
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as err:
        raise ClusterUnavailable(f"No Ray cluster at {address} ({err.strerror or err}); start one with "
                                 f"`ray start --head --port {port}`.") from err
    package = str(Path(__file__).resolve().parent)
    ray.init(address=f"{host}:{port}", runtime_env={"py_modules": [package]},
             log_to_driver=False, logging_level="ERROR", configure_logging=True)
    _CONNECTED["address"] = (host, port)


def disconnect() -> None:
    """Leave the cluster (the cluster itself keeps running)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _CONNECTED.clear()


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _pack(path: str) -> tuple[str, bytes | None, int]:
    """What a task needs to read ``path`` on any node: the path, its bytes, its size."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return path, None, -1  # the worker reports the error exactly as a local run would
    return path, data, len(data)


def _node_threads():
    """Math libraries at this node's full core count, as in a local run: Ray starts workers with
    OMP_NUM_THREADS=1, and BLAS sums in another order with another thread count (last-bit differences)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=os.cpu_count() or 1)


def _readable_here(path: str, data: bytes | None, size: int):
    """A context giving a local path with the input's content: the path itself when this node sees the
    same file, else a temporary copy with the same name (so decoding, and error messages, match)."""
    import contextlib

    @contextlib.contextmanager
    def local():
        if data is None or (os.path.isfile(path) and os.path.getsize(path) == size):
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="singtalk-") as folder:
            copy = Path(folder) / Path(path).name
            copy.write_bytes(data)
            yield str(copy)

    return local()


def _as_finished(submit: Callable[[object], object], items: Sequence, *, limit: int) -> Iterator[tuple[int, object]]:
    """Run ``submit(item) -> ObjectRef`` for every item with at most ``limit`` in flight; ``(index, result)`` as each
    finishes. Tasks still queued when the caller stops (Ctrl-C) are cancelled."""
    import ray

    pending: dict = {}
    next_item = 0
    try:
        while next_item < len(items) or pending:
            while next_item < len(items) and len(pending) < limit:
                pending[submit(items[next_item])] = next_item
                next_item += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), ray.get(ref)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001 - the cluster may be gone already
                pass


# -- features on the cluster ---------------------------------------------------
FeatureWork = Callable[[str], tuple]
"""``path → (vector or None, error)``: a module-level function (Ray ships it by reference)."""


def _features_task(packed: tuple[str, bytes | None, int], work: FeatureWork) -> tuple[np.ndarray | None, str]:
    path, data, size = packed
    with _node_threads(), _readable_here(path, data, size) as local:  # same file name: same error messages
        return work(local)


def cluster_features(paths: Sequence[str], work: FeatureWork, *, address: str
                     ) -> Iterator[tuple[int, tuple[np.ndarray | None, str]]]:
    """``(index, work(path))`` for each path as it finishes, run by Ray tasks on the cluster at ``address``
    (:func:`singtalk.dataset.extract_each` passes its feature extractor, which also runs the test hooks);
    a task lost with its node runs again (``max_retries=2``)."""
    import ray

    connect(address)
    remote = ray.remote(num_cpus=1, max_retries=2)(_features_task)
    return _as_finished(lambda p: remote.remote(_pack(p), work), list(paths),
                        limit=IN_FLIGHT_PER_CPU * cluster_cpus())


# -- classification --------------------------------------------------------------
def model_version(models_root: str | os.PathLike) -> str:
    """The store's serving version after checking its metadata fits this code (no TensorFlow needed)."""
    from .registry import ModelStore

    store = ModelStore(models_root)
    version = store.current_version()
    if version is None:
        raise ModelError(f"No model is installed in {store.root} (no CURRENT file). "
                         "Train one, or restore the shipped models/ folder.")
    store.check_compatible(version, store.read_metadata(version))
    return version


def model_classes(models_root: str | os.PathLike, version: str) -> list[str]:
    """The class names of a stored version, from its metadata (no TensorFlow needed)."""
    from .registry import ModelStore

    return list(ModelStore(models_root).read_metadata(version)["class_names"])


def _load_classifier(models_root: str, version: str | None, *, separate: bool = False):
    """The classifier; with ``separate``, Spleeter is built up front too, before any input is read."""
    from .classify import Classifier
    from .registry import ModelStore

    if separate:
        from .separation import get_separator

        get_separator()
    return Classifier(ModelStore(models_root).load(version))


_WORKER: dict = {}

TEST_DELAY_ENV = "SINGTALK_TEST_CLIP_DELAY"  # tests only: seconds to sleep before each input
TEST_KILL_ENV = "SINGTALK_TEST_KILL_ON"  # tests only: a worker SIGKILLs itself on an input containing this
TEST_TRACE_ENV = "SINGTALK_TEST_TRACE"  # tests only: a file each classified input is appended to


def _test_hooks(source) -> None:
    """Test hooks (environment, unset in use): slow each input, kill the worker on one, record each input."""
    if os.environ.get(TEST_TRACE_ENV):
        with open(os.environ[TEST_TRACE_ENV], "a", encoding="utf-8") as trace:
            trace.write(f"{os.getpid()} {source}\n")
    if os.environ.get(TEST_KILL_ENV) and os.environ[TEST_KILL_ENV] in str(source) and _WORKER:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(TEST_DELAY_ENV):
        import time

        time.sleep(float(os.environ[TEST_DELAY_ENV]))


def _init_worker(models_root: str, version: str, separate: bool) -> None:
    """Pool initialiser: one TensorFlow thread per worker (NumPy's BLAS keeps its default, so features
    are bit-identical to a one-process run); the model is loaded on the first input."""
    os.environ["SINGTALK_TF_THREADS"] = "1"
    _WORKER.update(root=models_root, version=version, separate=separate)


def _worker_classify(source):
    if "classifier" not in _WORKER:
        _WORKER["classifier"] = _load_classifier(_WORKER["root"], _WORKER["version"], separate=_WORKER["separate"])
    _test_hooks(source)
    return classify_safely(_WORKER["classifier"], source, separate=_WORKER["separate"])


def _local_pool(sources: list, *, models_root: str, version: str, separate: bool, jobs: int,
                progress: Progress | None, notice: Callable[[str], None] | None) -> Iterator[Outcome]:
    """Outcomes as they finish from ``jobs`` worker processes; a lost worker costs a retry (:mod:`singtalk.pool`)."""
    from . import pool

    def retrying(index: int, exitcode: int | None) -> None:
        if notice:
            how = f"signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"status {exitcode}"
            notice(f"a worker process died ({how}) classifying {sources[index]}: trying it again in a fresh worker")

    results = pool.run(sources, work=_worker_classify, init=_init_worker, init_args=(models_root, version, separate),
                       jobs=jobs, on_retry=retrying)
    for done, (index, result, death) in enumerate(results, start=1):
        prediction, error = result if result is not None else (None, death)
        yield sources[index], prediction, error
        if progress:
            progress(done, len(sources))


def _in_process(classifier, sources: list, *, separate: bool, progress: Progress | None) -> Iterator[Outcome]:
    """Outcomes one after the other in this process; with ``separate``, each input's vocal extraction runs
    one input ahead, beside the previous one's features (:func:`singtalk.classify.label_batch`)."""
    if separate and len(sources) > 1:
        from .classify import label_batch

        for outcome in label_batch(classifier, sources, separate=True, progress=progress):
            _test_hooks(outcome[0])
            yield outcome
        return
    for done, source in enumerate(sources, start=1):
        _test_hooks(source)
        yield (source, *classify_safely(classifier, source, separate=separate))
        if progress:
            progress(done, len(sources))


class _ClassifyActor:
    """One model (and, when asked, one Spleeter) per actor; the version's files arrive as bytes."""

    def __init__(self, version: str, files: dict, separate: bool):
        from .registry import CURRENT_FILE, VERSIONS_DIR

        self._folder = tempfile.TemporaryDirectory(prefix="singtalk-model-")
        root = Path(self._folder.name)
        (root / VERSIONS_DIR / version).mkdir(parents=True)
        for name, data in files.items():
            (root / VERSIONS_DIR / version / name).write_bytes(data)
        (root / CURRENT_FILE).write_text(version + "\n")
        self._classifier = _load_classifier(str(root), version, separate=separate)
        self._separate = separate

    def classify(self, source: str, packed):
        from .sources import is_url

        if is_url(source):
            with _node_threads():
                return classify_safely(self._classifier, source, separate=self._separate)
        path, data, size = packed
        _test_hooks(path)
        with _node_threads(), _readable_here(path, data, size) as local:
            return classify_safely(self._classifier, local, separate=self._separate, name=Path(path).name)


def _cluster_classify(sources: list, *, address: str, models_root: str, version: str, separate: bool,
                      progress: Progress | None, notice: Callable[[str], None] | None) -> Iterator[Outcome]:
    import ray

    from .registry import NET_FILE, VERSION_FILES, ModelStore
    from .sources import is_url

    connect(address)
    folder = ModelStore(models_root).version_dir(version)
    shipped = [*VERSION_FILES, *([NET_FILE] if (folder / NET_FILE).is_file() else [])]  # the NumPy copy: no TF
    files = {name: (folder / name).read_bytes() for name in shipped}
    actor_class = ray.remote(num_cpus=1, max_restarts=0)(_ClassifyActor)
    n_actors = max(1, min(cluster_cpus(), len(sources)))
    actors = [actor_class.remote(version, files, separate) for _ in range(n_actors)]
    work = [(s, None if is_url(s) else _pack(s)) for s in sources]
    try:
        for done, (index, prediction, error) in enumerate(_on_actors(actors, work, address, notice), start=1):
            yield sources[index], prediction, error
            if progress:
                progress(done, len(sources))
    finally:
        for actor in actors:
            ray.kill(actor)


ACTOR_RETRIES = 1
"""An input whose actor was lost (its node or process died) is tried this many more times on another actor."""


def _on_actors(actors: list, work: list, address: str, notice) -> Iterator[tuple[int, object, str]]:
    """``(index, Prediction | None, error)`` as calls finish, one call per actor at a time.

    An actor that dies (its node lost, its process killed) leaves the pool, and the input it held goes to
    another actor (once; then it gets an error row); when no actor is left, :class:`ClusterUnavailable`.
    """
    import ray
    from collections import Counter, deque

    idle, pending, queue, losses = list(actors), {}, deque(range(len(work))), Counter()
    while queue or pending:
        while idle and queue:
            actor, index = idle.pop(), queue.popleft()
            pending[actor.classify.remote(*work[index])] = (actor, index)
        if not pending:
            raise ClusterUnavailable(f"No node of the cluster at {address} is left to classify on.")
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        actor, index = pending.pop(ref)
        try:
            prediction, error = ray.get(ref)
        except ray.exceptions.RayActorError:
            losses[index] += 1
            if losses[index] <= ACTOR_RETRIES:
                queue.appendleft(index)
                if notice:
                    notice(f"the cluster lost the worker classifying {work[index][0]}: trying it on another")
            else:
                yield index, None, ("the cluster worker classifying this input was lost (its node or process "
                                    "died), twice; try it alone")
            continue
        except ray.exceptions.RayTaskError as err:
            cause = err.as_instanceof_cause()
            if isinstance(cause, SingtalkError):
                raise SingtalkError(str(cause).splitlines()[-1]) from None
            raise
        idle.append(actor)
        yield index, prediction, error


def classify_many(sources: Sequence, *, models_root: str | os.PathLike, separate: bool = False, jobs: int = 1,
                  cluster: str | None = None, progress: Progress | None = None,
                  notice: Callable[[str], None] | None = None) -> tuple[str, Iterator[Outcome]]:
    """``(model version, iterator of (source, Prediction | None, error))``, each input once, as they finish.

    ``cluster`` runs on the Ray cluster at that address (an actor lost with its node costs its input one
    retry on another actor, then an error row); otherwise ``jobs`` > 1
    spreads the inputs over that many worker processes on this machine (each loads the model once; a
    worker that dies costs its input one retry in a fresh worker, then an error row); one job, or a
    single input, runs in this process, in input order.
    A bad input gives an error row (as :func:`singtalk.classify.label_batch`); a ``no_voice``
    answer (also the one vocal extraction gives when it keeps only leakage) is a Prediction, not
    an error; a missing or incompatible model stops the batch before any input is read. ``notice``
    hears of faults the batch recovers from (a lost worker).
    """
    sources = list(sources)
    models_root = str(models_root)
    if cluster:
        version = model_version(models_root)
        return version, _cluster_classify(sources, address=cluster, models_root=models_root, version=version,
                                          separate=separate, progress=progress, notice=notice)
    jobs = max(1, min(int(jobs or 1), len(sources)))
    if jobs > 1:
        version = model_version(models_root)
        return version, _local_pool(sources, models_root=models_root, version=version, separate=separate,
                                    jobs=jobs, progress=progress, notice=notice)
    classifier = _load_classifier(models_root, None, separate=separate)
    return classifier.version, _in_process(classifier, sources, separate=separate, progress=progress)
