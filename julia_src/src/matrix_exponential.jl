# The matrix exponential of pyzygote's `pz.expm` (scipy.linalg.expm) and its Fréchet
# derivative, for one matrix or a stack of them. Included from PyZygote.jl.
#
# LinearAlgebra's `exp(A::AbstractMatrix)` copies `A` and calls `exp!`, which has a method
# only for `StridedMatrix{<:BlasFloat}` (Higham's scaling and squaring; an eigendecomposition
# for a Hermitian `A`), so a matrix of ForwardDiff duals (`jvp`, `hessian`) has none, and
# ChainRules' `rrule(exp, ::StridedMatrix{<:BlasFloat})` does not cover duals either (the
# pullback of a Hessian's gradient runs on duals). Duals here carry the Fréchet derivative
# `L(A, E)`, the top-right block of `exp([A E; 0 A])`, which is again an exponential of plain
# numbers (or of duals one level down, so nested duals recurse), and the `rrule`s use that
# the adjoint of `L(A, ⋅)` is `L(transpose(A), ⋅)` for real `A`.

"""
    expm(A)

numpy's `scipy.linalg.expm`: the exponential of each square matrix of `A`. A numpy array of
shape `(..., n, n)` is a Julia array of size `(..., n, n)` (the array contract), so the
matrices are `A[I, :, :]` for the indices `I` of the leading dimensions; a matrix is one.
Plain floats go to `LinearAlgebra.exp`; ForwardDiff duals carry the Fréchet derivative
[`expm_frechet`](@ref) of their partials.
"""
expm(A::AbstractArray{<:Real}) = _matrices(_expm_matrix, A)

"""
    expm_frechet(A, E)

The Fréchet derivative `L(A, E)` of [`expm`](@ref) at `A` in the direction `E` (of `A`'s
size), for each matrix: `exp(A + h E) = exp(A) + h L(A, E) + O(h²)`, computed as the
top-right block of `exp([A E; 0 A])` (Higham, *Functions of Matrices*, 2008, eq. 3.16) with
`E` scaled by a power of two to the 1-norm of `A` (at least 1) first (`L` is linear in `E`; a large `E` would make scaling
and squaring halve the block matrix more often than `A` needs). numpy's
`scipy.linalg.expm_frechet(A, E, compute_expm = false)` for one matrix.
"""
function expm_frechet(A::AbstractArray{<:Real}, E::AbstractArray{<:Real})
    size(A) == size(E) ||
        throw(DimensionMismatch("expm_frechet: E is $(size(E)), A is $(size(A))"))
    return _matrices(_frechet_matrix, A, E)
end

# `f` of each matrix: the arrays themselves when they are matrices, else each `A[I, :, :]`.
_matrices(f, A::AbstractMatrix, rest::AbstractMatrix...) = f(A, rest...)

function _matrices(
    f,
    A::AbstractArray{<:Any, N},
    rest::AbstractArray{<:Any, N}...,
) where {N}
    N > 2 ||
        throw(ArgumentError("expm takes square matrices, got an array of size $(size(A))"))
    lead = CartesianIndices(size(A)[1:(N - 2)])
    isempty(lead) && return zeros(promote_type(eltype(A), map(eltype, rest)...), size(A))
    blocks = map(I -> f(A[I, :, :], map(B -> B[I, :, :], rest)...), lead)
    out = similar(first(blocks), size(A))
    for I in lead
        out[I, :, :] = blocks[I]
    end
    return out
end

function _expm_matrix(A::AbstractMatrix)
    LinearAlgebra.checksquare(A)
    return isempty(A) ? copy(A) : LinearAlgebra.exp(A)
end

function _expm_matrix(A::AbstractMatrix{ForwardDiff.Dual{T, V, N}}) where {T, V, N}
    Av = ForwardDiff.value.(A)
    X = _expm_matrix(Av)
    parts = ntuple(j -> _frechet_matrix(Av, ForwardDiff.partials.(A, j)), N)
    return ForwardDiff.Dual{T}.(X, tuple.(parts...))
end

function _frechet_matrix(A::AbstractMatrix, E::AbstractMatrix)
    n = LinearAlgebra.checksquare(A)
    s = _direction_scale(A, E)
    sE = s .* E
    M = [A sE; zero(A) A]
    return _expm_matrix(M)[1:n, (n + 1):(2n)] ./ s
end

# The power of two that brings the 1-norm of `E` near `max(|A|, 1)`, as the NumPy engine's
# `_direction_scales`: a plain number (the values of any duals), so that `L(A, s E) / s` is
# `L(A, E)` exactly, in the partials too; 1 where `E` is zero or a norm is not finite. Its
# exponent stays inside the normal range, so neither `s` nor `s E` underflows to zero or
# overflows (`|A| / |E|` did for `|A| = 1e-30`, `|E| = 1e20` in Float32: NaN).
function _direction_scale(A::AbstractMatrix, E::AbstractMatrix)
    a = LinearAlgebra.opnorm(primal.(A), 1)
    e = LinearAlgebra.opnorm(primal.(E), 1)
    (e > 0 && isfinite(a) && isfinite(e)) || return one(a)
    F = typeof(a)
    k = exponent(max(a, one(a))) - exponent(e)
    return ldexp(one(a), clamp(k, exponent(floatmin(F)) + 2, exponent(floatmax(F)) - 2))
end

# Each matrix transposed: numpy's `swapaxes(A, -1, -2)`.
function _transposed(A::AbstractArray{<:Any, N}) where {N}
    return permutedims(A, (ntuple(identity, N - 2)..., N, N - 1))
end

function ChainRulesCore.rrule(::typeof(expm), A::AbstractArray{<:Real})
    X = expm(A)
    project_A = ProjectTo(A)
    function expm_pullback(ΔX)
        G = unthunk(ΔX)
        G isa ChainRulesCore.AbstractZero && return (NoTangent(), G)
        return NoTangent(), project_A(expm_frechet(_transposed(A), G))
    end
    return X, expm_pullback
end

function ChainRulesCore.rrule(
    ::typeof(expm_frechet),
    A::AbstractArray{<:Real},
    E::AbstractArray{<:Real},
)
    L = expm_frechet(A, E)
    project_A, project_E = ProjectTo(A), ProjectTo(E)
    function expm_frechet_pullback(ΔL)
        G = unthunk(ΔL)
        G isa ChainRulesCore.AbstractZero && return (NoTangent(), G, G)
        Ā = _matrices(_frechet_cotangent_of_A, A, E, G)
        Ē = expm_frechet(_transposed(A), G)
        return NoTangent(), project_A(Ā), project_E(Ē)
    end
    return L, expm_frechet_pullback
end

# `L(A, E)` is the top-right block of `exp(M)`, `M = [A E; 0 A]`, so its derivative in `A`
# along `dA` is the top-right block of `L(M, [dA 0; 0 dA])`. The transpose of that map takes
# `G` to the sum of the diagonal blocks of `L(Mᵀ, [0 G; 0 0])`.
function _frechet_cotangent_of_A(A::AbstractMatrix, E::AbstractMatrix, G::AbstractMatrix)
    n = LinearAlgebra.checksquare(A)
    Z = zero(A)
    K = _frechet_matrix(permutedims([A E; Z A]), [Z G; Z Z])
    return K[1:n, 1:n] .+ K[(n + 1):(2n), (n + 1):(2n)]
end
