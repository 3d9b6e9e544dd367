"""Models: :class:`Sequential`, a chain of layers run as GraphBLAS stages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from . import runner
from .convert import ArrayLike
from .errors import DTypeError, GbdnnError, ParameterTypeError, ShapeError
from .layers import Layer


class Sequential:
    """A chain of layers applied in order: ``Y = f_n(... f_2(f_1(X)))``.

    Parameters
    ----------
    layers : iterable of Layer
        At least one layer, and at least one :class:`~gbdnn.Linear` to fix
        the input width. Consecutive widths must agree and all Linear layers
        must share one value type.

    Examples
    --------
    >>> import numpy as np, gbdnn
    >>> rng = np.random.default_rng(0)
    >>> W1, W2 = rng.normal(size=(8, 16)), rng.normal(size=(16, 4))
    >>> model = gbdnn.Sequential([gbdnn.Linear(W1, -0.1), gbdnn.ReLU(), gbdnn.Linear(W2)])
    >>> model(rng.normal(size=(5, 8))).shape
    (5, 4)
    """

    def __init__(self, layers: Iterable[Layer]) -> None:
        layers = list(layers)
        if not layers:
            raise GbdnnError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ParameterTypeError(
                    f"layer {i} is a {type(layer).__name__}, not a gbdnn Layer"
                )
        weighted = [layer for layer in layers if layer.in_features is not None]
        if not weighted:
            raise GbdnnError("Sequential needs at least one Linear layer to fix its input width")
        dtypes = {layer.dtype for layer in weighted}
        if len(dtypes) > 1:
            names = sorted(d.name for d in dtypes)
            raise DTypeError(f"all Linear layers must share one dtype, got {', '.join(names)}")
        self.layers = layers
        self.dtype = weighted[0].dtype
        self.in_features: int = weighted[0].in_features
        self.out_features, self._max_width = self._check_widths()
        self._stages = self._compile()

    def _check_widths(self) -> tuple[int, int]:
        width = widest = self.in_features
        for i, layer in enumerate(self.layers):
            if layer.in_features is not None and layer.in_features != width:
                raise ShapeError(
                    f"layer {i} ({layer!r}) expects {layer.in_features} inputs but receives {width}"
                )
            width = layer.output_width(width)
            widest = max(widest, width)
        return width, widest

    def _compile(self) -> list[runner.Stage]:
        stages, i = [], 0
        while i < len(self.layers):
            following = self.layers[i + 1] if i + 1 < len(self.layers) else None
            stage, used = self.layers[i].stage(following)
            stages.append(stage)
            i += used
        return stages

    @property
    def nnz(self) -> int:
        """Total number of stored weights (the challenge's sum of nnz(W))."""
        return sum(layer.nnz for layer in self.layers)

    @property
    def weight_bytes(self) -> int:
        """Bytes the layers' weights hold now, with the copies their kernels have
        built (:attr:`gbdnn.layers.Product.weight_bytes`)."""
        return sum(layer.weight_bytes for layer in self.layers)

    def row_seconds(self) -> float:
        """Estimated seconds of one dense row that batch threads can share (the sum
        over the layers; see :func:`gbdnn.runner.run`)."""
        return sum(layer.row_seconds() for layer in self.layers)

    def predict(
        self,
        x: ArrayLike,
        *,
        batch_size: int | None = None,
        threads: int | None = None,
        output: runner.Output = "auto",
        check_finite: bool = True,
        progress: bool = False,
    ) -> ArrayLike:
        """Run the model on the rows of ``x``.

        Parameters
        ----------
        x : numpy.ndarray, scipy.sparse matrix or array, or graphblas.Matrix
            Shape ``(n_samples, in_features)``, real values (ints and bools
            are cast to the model's dtype).
        batch_size : int, optional
            Rows per batch. Memory is bounded by ``threads`` batches in flight
            plus the result. Default: about 4 million activations per batch
            (4096 rows for a 1024-wide model).
        threads : int, optional
            Batches run in parallel on this many threads (default: every core
            this process may use). Results are bit-identical for any
            ``batch_size`` and ``threads``.
        output : {"auto", "numpy", "scipy", "graphblas"}, default "auto"
            Family of the result; ``"auto"`` returns the family of ``x``
            (a SciPy result is CSR).
        check_finite : bool, default True
            Reject inputs holding NaN or Inf.
        progress : bool, default False
            Show a progress bar over the rows.

        Returns
        -------
        numpy.ndarray, scipy.sparse CSR or graphblas.Matrix
            Shape ``(n_samples, out_features)``.

        Raises
        ------
        ShapeError
            If ``x`` is not 2-D or its width is not ``in_features``.
        DTypeError
            If ``x`` is not a supported array or not of a real value type.
        NonFiniteError
            If ``check_finite`` and ``x`` holds NaN or Inf.
        """
        return runner.run(
            self._stages,
            x,
            in_features=self.in_features,
            out_features=self.out_features,
            max_width=self._max_width,
            vtype=self.dtype,
            batch_size=batch_size,
            threads=threads,
            output=output,
            check_finite=check_finite,
            progress=progress,
            row_seconds=self.row_seconds,
        )

    __call__ = predict

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __repr__(self) -> str:
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner}\n])"
