"""The probe: a student's answer turned into plain JSON data, inside the student's kernel.

``probe(grade_id, answer)`` never raises for a bad answer: whatever it cannot read becomes
``{"error": message}`` for the grader's verdict to report. For a function it calls the answer on
the fixed case list of that exercise (:mod:`.cases`), each call on fresh tensors, and records
every return value or exception. It holds no expected value and judges nothing: the verdict is
the grader's (``toeplitz_course.grader.verdicts``), computed in the grader's own process.

Payloads (JSON; a non-finite float is written as the string ``"nan"``, ``"inf"`` or ``"-inf"``):

* no answer (``None`` or ``...``): ``{"missing": true}``; unreadable answer: ``{"error": str}``
* matrix: ``{"shape": [rows, cols], "values": [[float, ...], ...]}``; ``values`` is left out when
  the answer is not 2-D or has more than ``MAX_ENTRIES`` entries (the shape alone is wrong then)
* count: ``{"value": int | float}``
* set of shifts: ``{"ints": [int, ...], "others": [str, ...]}`` (``others`` describes the items
  that are not ints), in the answer's iteration order so that duplicates show
* function: ``{"results": [result, ...]}``, one per case, in order (the grader's cases are
  ``cases.CASES[grade_id]``; a notebook's self-check passes its few visible ones); a result
  is ``{"raised": type name, "message": str}`` or the returned value probed as above (a matrix, a
  ``{"value": ...}`` number, ``{"counts": [...]}`` for ``param_counts``, ``{"none": true}`` for
  a ``same_padding`` that returned None)

A builder called on a kernel alone (``padded_matrix``, ``block_matrix``) runs with the
convolution switched off (:func:`without_convolution`): the exercise is to build the matrix from
the kernel's entries, not to read it off the convolution.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from .data import CaseCall, CaseGap

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
    np = None

MAX_ENTRIES = 10_000  # far above any expected matrix (49 x 49); bigger answers keep only a shape
MAX_ITEMS = 1_000
MAX_TEXT = 300


class UnknownExercise(KeyError):
    """No check is registered under this grade_id (a programming error, not a student's)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown exercise"


# --------------------------------------------------------------------------------------------
# Plain-data helpers (the grader's verdicts word their messages with the same ones)
# --------------------------------------------------------------------------------------------


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    try:
        s = str(value)
    except Exception:  # a hostile __str__ must not break probe
        s = f"<unprintable {type(value).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _short_repr(value: Any) -> str:
    try:
        s = repr(value)
    except Exception:
        s = f"<{type(value).__name__}>"
    return s if len(s) <= 40 else s[:37] + "..."


def _describe_exception(e: BaseException) -> str:
    message = _text(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _encode(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _is_np_bool(x: Any) -> bool:
    return np is not None and isinstance(x, np.bool_)


def _number(x: Any) -> int | float | str:
    """A Python number from a scalar-like answer; ``TypeError`` (student-readable) otherwise."""
    if isinstance(x, bool) or _is_np_bool(x):
        raise TypeError(f"got a bool ({x})")
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _encode(float(x))
    if np is not None and isinstance(x, np.generic):
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            return _encode(float(x))
        raise TypeError(f"got a numpy {type(x).__name__}")
    if isinstance(x, torch.Tensor):
        if x.dim() != 0:
            raise TypeError(f"got a tensor of shape {_fmt_shape(tuple(x.shape))}, not one number")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"got a tensor of dtype {x.dtype}")
        return _number(x.item())
    if np is not None and isinstance(x, np.ndarray):
        if x.ndim != 0:
            raise TypeError(f"got an array of shape {_fmt_shape(x.shape)}, not one number")
        return _number(x[()])
    raise TypeError(f"got {_a(type(x).__name__)} ({_short_repr(x)})")


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# --------------------------------------------------------------------------------------------
# Probing: answer -> plain data. Nothing here may raise for a bad answer.
# --------------------------------------------------------------------------------------------


def _is_missing(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _read(obj: Any, reader, what: str) -> dict:
    """``reader(obj)`` as payload data; a missing answer or one that can't be read, recorded."""
    if _is_missing(obj):
        return {"missing": True}
    try:
        return reader(obj)
    except Exception as e:
        return {"error": f"could not read it as {what} ({_describe_exception(e)})"}


def _probe_matrix(obj: Any) -> dict:
    return _read(obj, _matrix_data, "a matrix")


def _layer_problem(layer: torch.nn.Module, weight: torch.Tensor) -> str | None:
    """Why ``layer`` is not the linear map ``x -> weight @ x``, or None when it is.

    A layer answer is its weight, but the layer is what the notebook then applies: a bias (on by
    default in ``nn.Linear``) or a forward that does something else makes it another map, so the
    layer is run on a zero input and on a seeded random one. Nothing here touches the global RNG.
    """
    out_f, in_f = weight.shape
    weight = weight.detach().to(torch.float64)
    generator = torch.Generator().manual_seed(2024)
    x = torch.rand(3, in_f, generator=generator, dtype=torch.float64) * 2 - 1
    inputs = torch.cat([torch.zeros(1, in_f, dtype=torch.float64), x])
    with torch.no_grad():
        y = layer(inputs.to(layer.weight.dtype))
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (4, out_f):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        return f"applied to {in_f} numbers, the layer gives {shape}, not {out_f} numbers"
    y = y.detach().to(torch.float64)
    scale = 1e-4 * (1 + float(weight.abs().max()))
    if float(y[0].abs().max()) > scale:
        return (
            "the layer adds a bias (its output for a zero input is not zero): make it "
            "nn.Linear(..., bias=False), or set its bias to zero"
        )
    if float((y[1:] - x @ weight.T).abs().max()) > scale:
        return "the layer does not compute weight @ x: its output is not its weight times the input"
    return None


def _matrix_data(obj: Any) -> dict:
    if isinstance(obj, torch.nn.Module):
        weight = getattr(obj, "weight", None)
        if not isinstance(weight, torch.Tensor):
            return {"error": f"{_a(type(obj).__name__)} has no weight matrix"}
        if weight.dim() == 2 and 0 < weight.numel() <= MAX_ENTRIES and weight.is_floating_point():
            problem = _layer_problem(obj, weight)
            if problem:
                return {"error": problem}
        obj = weight
    if isinstance(obj, torch.Tensor):
        return _tensor_data(obj.detach())
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iuf":
            return _tensor_data(torch.from_numpy(np.array(obj, dtype=np.float64)))
        if obj.dtype.kind != "O":
            return {"error": f"a numpy array of dtype {obj.dtype}: expected real numbers"}
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return _nested_data(obj)
    return {
        "error": "expected a matrix (a torch tensor, a numpy array, a list of rows or an "
        f"nn.Linear), got {_a(type(obj).__name__)}"
    }


def _tensor_data(t: torch.Tensor) -> dict:
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.dtype == torch.bool or t.is_complex():
        return {"error": f"a tensor of dtype {t.dtype}: expected real numbers"}
    shape = list(t.shape)
    if t.dim() != 2 or t.numel() > MAX_ENTRIES:
        return {"shape": shape}
    t = t.to(device="cpu", dtype=torch.float64)
    values = t.tolist()
    if not bool(torch.isfinite(t).all()):
        values = [[_encode(v) for v in row] for row in values]
    return {"shape": shape, "values": values}


def _is_row(r: Any) -> bool:
    if isinstance(r, (list, tuple)):
        return True
    if isinstance(r, torch.Tensor) or (np is not None and isinstance(r, np.ndarray)):
        return r.ndim >= 1
    return False


def _nested_data(rows: list | tuple) -> dict:
    if len(rows) > MAX_ENTRIES:
        return {"shape": [len(rows)]}
    if rows and not any(_is_row(r) for r in rows):
        return {"shape": [len(rows)]}  # a flat list: a vector, not a matrix
    values: list[list[float | str]] = []
    total = 0
    for index, row in enumerate(rows):
        if isinstance(row, torch.Tensor) or (np is not None and isinstance(row, np.ndarray)):
            if row.ndim != 1:
                return {"error": f"row {index} has shape {_fmt_shape(tuple(row.shape))}"}
            row = row.tolist()
        if not isinstance(row, (list, tuple)):
            return {"error": f"row {index} is {_a(type(row).__name__)}, not a list of numbers"}
        total += len(row)
        if total > MAX_ENTRIES:
            return {"shape": [len(rows), len(row)]}
        try:
            numbers = [_number(v) for v in row]
        except TypeError as e:
            return {"error": f"row {index} holds something that is not a number ({e})"}
        values.append([float(v) if isinstance(v, int) else v for v in numbers])
    lengths = sorted({len(v) for v in values})
    if len(lengths) > 1:
        return {"error": f"its rows have different lengths ({lengths[0]} and {lengths[-1]})"}
    return {"shape": [len(values), lengths[0] if lengths else 0], "values": values}


def _count_data(obj: Any) -> dict:
    try:
        return {"value": _number(obj)}
    except TypeError as e:  # _number's own explanation of what it got
        return {"error": f"expected a whole number, {e}"}


def _probe_count(obj: Any) -> dict:
    return _read(obj, _count_data, "a number")


def _probe_shifts(obj: Any) -> dict:
    return _read(obj, _shift_data, "a set of shifts")


def _shift_data(obj: Any) -> dict:
    not_a_collection = {
        "error": f"expected a collection of ints such as a set, got {_a(type(obj).__name__)}"
    }
    if isinstance(obj, (str, bytes, dict)):
        return not_a_collection
    if isinstance(obj, torch.Tensor) or (np is not None and isinstance(obj, np.ndarray)):
        if obj.ndim != 1:
            return {
                "error": "expected a collection of ints such as a set, got an array of shape "
                + _fmt_shape(tuple(obj.shape))
            }
        items = list(obj)
    else:
        try:
            iterator = iter(obj)
        except TypeError:
            return not_a_collection
        if iterator is obj:
            # A generator, filter or map object is used up by the first reading: the hidden test
            # would read it and the check below it would find it empty (or the other way round).
            return {
                "error": f"{_a(type(obj).__name__)} is used up once read: make it a set, "
                "e.g. set(...) around it or a {...} comprehension"
            }
        items = list(itertools.islice(iterator, MAX_ITEMS + 1))
    if len(items) > MAX_ITEMS:
        return {"error": f"more than {MAX_ITEMS} items: expected a few shifts"}
    ints: list[int] = []
    others: list[str] = []
    for item in items:
        value = _int_item(item)
        if value is None:
            others.append(f"{_short_repr(item)} ({type(item).__name__})")
        else:
            ints.append(value)
    return {"ints": ints, "others": others}


def _int_item(item: Any) -> int | None:
    if isinstance(item, bool) or _is_np_bool(item):
        return None
    if isinstance(item, int):
        return int(item)
    if np is not None and isinstance(item, np.integer):
        return int(item)
    if isinstance(item, torch.Tensor) and item.dim() == 0:
        if item.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            return int(item.item())
    return None


def _call(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: a student's function must not end the probe
        return False, {"raised": type(e).__name__, "message": _text(e)}


def _probe_function(answer: Any, calls: Callable[..., list[dict]], cases: Sequence[Any]) -> dict:
    if _is_missing(answer):
        return {"missing": True}
    if not callable(answer):
        return {"error": f"should be a function, got {_a(type(answer).__name__)}"}
    return {"results": calls(answer, cases)}


def _probe_number_result(value: Any) -> dict:
    if value is None:
        return {"missing": True}
    try:
        return {"value": _number(value)}
    except TypeError as e:
        return {"error": f"returned something that is not a number: {e}"}
    except Exception as e:
        return {"error": f"returned something unreadable ({_describe_exception(e)})"}


def _probe_counts_result(value: Any) -> dict:
    if value is None:
        return {"missing": True}
    try:
        if isinstance(value, torch.Tensor) or (np is not None and isinstance(value, np.ndarray)):
            if value.ndim != 1:
                return {"error": f"returned an array of shape {_fmt_shape(tuple(value.shape))}"}
            value = list(value)
        if not isinstance(value, (tuple, list)):
            return {"error": f"returned {_a(type(value).__name__)}, not a tuple of 3 counts"}
        if len(value) > 10:
            return {"error": f"returned {len(value)} values, not a tuple of 3 counts"}
        return {"counts": [_number(v) for v in value]}
    except TypeError as e:
        return {"error": f"returned a tuple holding something that is not a number: {e}"}
    except Exception as e:
        return {"error": f"returned something unreadable ({_describe_exception(e)})"}


#: What a builder or a Part 6 function is called without (the notebook says so): torch's and
#: numpy's convolutions and the layers made of them. ``nn.Conv1d`` looks ``F.conv1d`` up at call
#: time, so a layer made before the call is off too. Running a convolution on unit vectors or on
#: zeros would give the matrix, the length or the count without the reasoning.
CONVOLUTIONS = {
    "torch.nn.functional": (
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
    ),
    "torch": (
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "convolution",
        "conv_tbc",
    ),
    "torch.nn": (
        "Conv1d",
        "Conv2d",
        "Conv3d",
        "ConvTranspose1d",
        "ConvTranspose2d",
        "ConvTranspose3d",
        "LazyConv1d",
        "LazyConvTranspose1d",
    ),
    "numpy": ("convolve", "correlate"),
    # What numpy's convolve and correlate call, looked up at call time: a student's own alias of
    # them (``from numpy import convolve``) is off too. ``numpy.core`` before numpy 2.
    "numpy._core.multiarray": ("correlate", "correlate2"),
    "numpy.core.multiarray": ("correlate", "correlate2"),
}

#: What the message says to do instead, by the kind of answer.
BUILD_IT = (
    "build the matrix from the kernel's entries by the index rule (running a convolution on "
    "unit vectors is Part 5's trick, not this exercise)"
)
WORK_IT_OUT = "work it out from the shapes (the exercise says so); the cells around it may use it"


def _is_convolution(func: Any) -> bool:
    """Whether a torch function is a convolution: ``conv1d`` to ``conv_transpose3d``,
    ``convolution``, ``_convolution``, ``conv_tbc``, ``mkldnn_convolution``, ... by its name."""
    name = getattr(func, "__name__", "") or ""
    return "conv" in name and "convert" not in name


@contextlib.contextmanager
def without_convolution(name: str, instead: str = BUILD_IT) -> Iterator[None]:
    """While in the block, every convolution of torch and numpy raises, naming ``name`` (the
    function being probed) and what to do ``instead``; all are restored after it.

    By name, the functions of :data:`CONVOLUTIONS` (the message names the one called); and
    whatever name the student reached it by (``from torch.nn.functional import conv1d`` above
    the function, ``torch.ops.aten.convolution``, a layer's class from ``type(layer)``): every
    torch function call goes through a ``TorchFunctionMode`` that refuses the convolutions, and
    the convolution layers' common constructor (``_ConvNd.__init__``) refuses to build one, so a
    layer's parameters cannot be counted either.
    """

    def switched_off(qualified: str) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(
                f"the convolution is switched off while {name} runs ({qualified} is not "
                f"available inside this function): {instead}"
            )

        return refuse

    from torch.overrides import TorchFunctionMode

    class NoConvolution(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if _is_convolution(func):
                switched_off(f"torch's {getattr(func, '__name__', 'convolution')}")()
            return func(*args, **(kwargs or {}))

    saved = []
    try:
        for module_name, names in CONVOLUTIONS.items():
            module = sys.modules.get(module_name)
            for attr in names if module is not None else ():
                if attr in vars(module):
                    saved.append((module, attr, vars(module)[attr]))
                    setattr(module, attr, switched_off(f"{module_name}.{attr}"))
        conv_nd = getattr(getattr(torch.nn.modules, "conv", None), "_ConvNd", None)
        if conv_nd is not None and "__init__" in vars(conv_nd):
            saved.append((conv_nd, "__init__", vars(conv_nd)["__init__"]))
            conv_nd.__init__ = switched_off("a convolution layer")
        with NoConvolution():
            yield
    finally:
        for module, attr, value in reversed(saved):
            setattr(module, attr, value)


def _calls_kernel(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        kernel = torch.tensor(case.kernel, dtype=torch.float32)
        with without_convolution(case.name):
            ok, value = _call(fn, kernel)
        results.append(_probe_matrix(value) if ok else value)
    return results


def _calls_length(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        args = (case.n, case.k) if case.padding is None else (case.n, case.k, case.padding)
        ok, value = _call(fn, *args)
        results.append(_probe_number_result(value) if ok else value)
    return results


def _calls_same(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        ok, value = _call(fn, case.k)
        if ok and value is None:
            results.append({"none": True})  # an answer here: "no padding does it"
        else:
            results.append(_probe_number_result(value) if ok else value)
    return results


def _calls_1d(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        w = torch.tensor(case.w, dtype=torch.float32)
        args = (w, case.n) if case.padding is None else (w, case.n, case.padding)
        ok, value = _call(fn, *args)
        results.append(_probe_matrix(value) if ok else value)
    return results


def _course_conv(case: CaseGap) -> torch.nn.Conv1d:
    """A fresh ``nn.Conv1d`` like the notebook's, with the case's kernel."""
    conv = torch.nn.Conv1d(1, 1, len(case.kernel), padding=case.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(case.kernel, dtype=torch.float32).view(1, 1, -1))
    return conv


def _calls_gap(fn: Callable, cases: Sequence[CaseGap]) -> list[dict]:
    # Building the layers draws from the global RNG (their initial weights); the student's own
    # random numbers after this test must not depend on whether the test ran.
    with torch.random.fork_rng(devices=[]):
        convs = [_course_conv(case) for case in cases]
    results = []
    for case, conv in zip(cases, convs, strict=True):
        x = torch.tensor([case.x], dtype=torch.float32)
        # A gap is a measurement: no autograd graph, which also spares a tensor.numpy() error.
        with torch.no_grad():
            ok, value = _call(fn, conv, x, case.n)
        results.append(_probe_number_result(value) if ok else value)
    return results


def _calls_2d(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        kernel = torch.tensor(case.kernel, dtype=torch.float32)
        ok, value = _call(fn, kernel, case.H, case.W)
        results.append(_probe_matrix(value) if ok else value)
    return results


def _calls_counts(fn: Callable, cases: Sequence[Any]) -> list[dict]:
    results = []
    for case in cases:
        ok, value = _call(fn, case.H, case.W, case.R, case.S)
        results.append(_probe_counts_result(value) if ok else value)
    return results


def _part6_args(case: CaseCall) -> tuple[Any, ...]:
    args = []
    for param, value in zip(case.params, case.args, strict=True):
        if param == "w":
            value = torch.tensor(value, dtype=torch.float32)
        elif param == "channels":
            value = list(value)
        args.append(value)
    return tuple(args)


def _calls_part6(reader: Callable[[Any], dict]) -> Callable[[Callable, Sequence[Any]], list[dict]]:
    def calls(fn: Callable, cases: Sequence[CaseCall]) -> list[dict]:
        results = []
        for case in cases:
            with without_convolution(case.name, WORK_IT_OUT):
                ok, value = _call(fn, *_part6_args(case))
            results.append(reader(value) if ok else value)
        return results

    return calls


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------


class _FunctionProbe:
    """Calls a function answer on each case (``probe`` passes the case list)."""

    def __init__(self, calls: Callable[..., list[dict]]):
        self.calls = calls

    def __call__(self, answer: Any, cases: Sequence[Any]) -> dict:
        return _probe_function(answer, self.calls, cases)


def _function_probe(calls: Callable[..., list[dict]]) -> _FunctionProbe:
    return _FunctionProbe(calls)


_PROBES: dict[str, Callable[[Any], dict]] = {
    "ex1_1_test": _function_probe(_calls_length),
    "ex1_2_test": _probe_matrix,
    "ex1_3_test": _function_probe(_calls_1d),
    "ex2_1_test": _function_probe(_calls_length),
    "ex2_2_test": _function_probe(_calls_kernel),
    "ex2_3_test": _function_probe(_calls_same),
    "ex3_1_test": _function_probe(_calls_gap),
    "ex3_2_test": _probe_shifts,
    "ex3_3_test": _probe_shifts,
    "ex4_1_test": _function_probe(_calls_kernel),
    "ex4_2_test": _function_probe(_calls_2d),
    "ex5_1a_test": _probe_count,
    "ex5_1b_test": _probe_count,
    "ex5_1c_test": _probe_count,
    "ex5_2_test": _function_probe(_calls_counts),
    "ex6_1_test": _function_probe(_calls_part6(_probe_number_result)),
    "ex6_2_test": _function_probe(_calls_part6(_probe_matrix)),
    "ex6_3_test": _function_probe(_calls_part6(_probe_matrix)),
    "ex6_4_test": _function_probe(_calls_part6(_probe_number_result)),
}

EXERCISES_PROBED = frozenset(_PROBES)


def lookup(grade_id: str, registry: dict[str, Any]) -> Any:
    """``registry[grade_id]``, or :class:`UnknownExercise` naming the known ids."""
    try:
        return registry[grade_id]
    except (KeyError, TypeError):
        raise UnknownExercise(
            f"no check for grade_id {grade_id!r}; known: {', '.join(sorted(registry))}"
        ) from None


def probe(grade_id: str, answer: Any, cases: Sequence[Any] | None = None) -> Any:
    """Plain JSON data describing ``answer`` for the exercise ``grade_id``; never raises for it.

    A function answer is called on ``cases``, by default the grader's (``cases.CASES``).
    """
    reader = lookup(grade_id, _PROBES)
    try:
        if isinstance(reader, _FunctionProbe):
            if cases is None:
                from .cases import CASES  # imported here: the self-checks inline no hidden case

                cases = CASES[grade_id]
            return reader(answer, cases)
        return reader(answer)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # a hostile answer must still leave a payload behind
        return {"error": f"could not read the answer ({_describe_exception(e)})"}
