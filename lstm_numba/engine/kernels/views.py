"""Array views for the compiled loops."""

from numba import types
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic


@intrinsic
def unit_stride(typingctx, view):
    """``view`` (a 1-D array whose elements are adjacent) typed as C-contiguous.

    Numba types a slice of a non-contiguous array (the tape's h columns) as layout 'A',
    and LLVM then keeps loops over it scalar. The caller guarantees the unit stride.
    """
    if not isinstance(view, types.Array) or view.ndim != 1:
        return None
    contiguous = view.copy(layout="C")

    def codegen(context, builder, sig, args):
        return impl_ret_borrowed(context, builder, sig.return_type, args[0])

    return contiguous(view), codegen
