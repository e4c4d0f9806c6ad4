package kernels

// Function values chosen at start-up. The per-architecture files replace them
// in init when a faster path is available.
var (
	path           = "generic"
	gemmNT         = gemmNTGeneric
	gemmNN         = gemmNNGeneric
	gemmTN         = gemmTNGeneric
	gemmNTBF16     = gemmNTBF16Generic
	gemmNNBF16     = gemmNNBF16Generic
	gemmNTBF16Fast = gemmNTBF16FastGeneric
	gemmNTF16      = gemmNTF16Generic
	gemmNNF16      = gemmNNF16Generic
	dot            = dotGeneric
	axpy           = axpyGeneric
	scale          = scaleGeneric
	sumSq          = sumSqGeneric
)
