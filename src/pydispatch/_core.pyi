# Stubs of pydispatch._core (native kernels).
import numpy as np
from numpy.typing import NDArray

_F64 = NDArray[np.float64]
_I32 = NDArray[np.int32]
_I64 = NDArray[np.int64]

# ---------------------------------------------------------------- solver (src/core/solver.pyx)

def sol_build_csr(n: int, src: _I32, dst: _I32, vol: _F64) -> tuple[_I64, _I32, _F64]: ...
def sol_traffic_order(ptr: _I64, nbr: _I32, vol: _F64, seeds: _I64) -> _I64: ...
def sol_network_bound(
    ptr: _I64,
    nbr: _I32,
    vol: _F64,
    dem: _F64,
    R: int,
    capl: _F64,
    saving: _F64,
    dfar: float,
) -> float: ...

class SolverKernel:
    def __init__(
        self,
        T: int,
        W: int,
        R: int,
        L: int,
        dem: _F64,
        cap: _F64,
        fin_ptr: _I32,
        fin_idx: _I32,
        cost_mode: int,
        cost: _F64,
        work: _F64,
        speed: _F64,
        dist_mode: int,
        grp: _I32,
        dl: _F64,
        dfar: float,
        dist: _F64,
        adj_ptr: _I64,
        adj_nbr: _I32,
        adj_vol: _F64,
        tclass: _I32,
        cmask: NDArray[np.uint8],
        pinned: _I32,
        aa_group: _I32,
        aa_limit: _I32,
        aa_dom: _I32,
        n_dom: int,
        n_groups: int,
        eps: float,
        eps_obj: float,
    ) -> None: ...
    def clear(self) -> None: ...
    def set_assignment(self, assign: _I32) -> None: ...
    def place_pinned(self) -> None: ...
    def greedy(self, order: _I64, rule: int) -> int: ...
    def local_search(
        self, time_limit: float, seed: int, max_passes: int, n_swap_workers: int = ...
    ) -> tuple[int, int, float]: ...
    def iterated_local_search(
        self, time_limit: float, seed: int, stall: int, n_swap_workers: int = ...
    ) -> tuple[int, float]: ...
    def objective(self, src: _I32, dst: _I32, vol: _F64) -> tuple[float, float]: ...
    def min_cost(self) -> _F64: ...
    @property
    def assignment(self) -> _I32: ...
    @property
    def usage(self) -> _F64: ...
