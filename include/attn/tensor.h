// TensorView<T> and Tensor<T>: how attn sees memory.
//
// A TensorView is a non-owning, trivially copyable window: a data pointer,
// four extents and four element strides, always in the logical order
// [batch, heads, seq, dim]. BHSD and BSHD buffers, a packed QKV buffer, a
// slice of a KV cache and a broadcast mask (zero strides) are all views of
// this one type. A Tensor owns 64-byte aligned, contiguous BHSD storage and
// hands out views.
#ifndef ATTN_TENSOR_H_
#define ATTN_TENSOR_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>

#include "attn/error.h"
#include "attn/types.h"

namespace attn {

// Logical axes of every view.
enum Axis : int { kBatch = 0, kHeads = 1, kSeq = 2, kDim = 3 };

using Extents = std::array<int64_t, 4>;
using Strides = std::array<int64_t, 4>;

template <class T>
class TensorView {
 public:
  using element_type = T;

  constexpr TensorView() = default;
  constexpr TensorView(T* data, Extents extents, Strides strides)
      : data_(data), extents_(extents), strides_(strides) {}

  // A view of T converts to a view of const T.
  template <class U>
  requires(std::is_const_v<T>&& std::is_same_v<
           const U, T>) constexpr TensorView(const TensorView<U>&
                                                 other)  // NOLINT: implicit
      : data_(other.data()),
        extents_(other.extents()),
        strides_(other.strides()) {}

  // Contiguous [B, H, S, D] storage.
  static constexpr TensorView bhsd(T* data, int64_t b, int64_t h, int64_t s,
                                   int64_t d) {
    return TensorView(data, {b, h, s, d}, {h * s * d, s * d, d, 1});
  }
  // Contiguous [B, S, H, D] storage, seen in logical [B, H, S, D] order.
  static constexpr TensorView bshd(T* data, int64_t b, int64_t s, int64_t h,
                                   int64_t d) {
    return TensorView(data, {b, h, s, d}, {s * h * d, d, h * d, 1});
  }

  constexpr T* data() const { return data_; }
  constexpr const Extents& extents() const { return extents_; }
  constexpr const Strides& strides() const { return strides_; }
  constexpr int64_t extent(int axis) const { return extents_[axis]; }
  constexpr int64_t stride(int axis) const { return strides_[axis]; }
  constexpr bool empty() const { return data_ == nullptr; }
  constexpr int64_t numel() const {
    return extents_[0] * extents_[1] * extents_[2] * extents_[3];
  }

  constexpr int64_t offset(int64_t b, int64_t h, int64_t s, int64_t d) const {
    return b * strides_[0] + h * strides_[1] + s * strides_[2] +
           d * strides_[3];
  }
  constexpr T& operator()(int64_t b, int64_t h, int64_t s, int64_t d) const {
    return data_[offset(b, h, s, d)];
  }
  // Pointer to the first element of row (b, h, s).
  constexpr T* row(int64_t b, int64_t h, int64_t s) const {
    return data_ + offset(b, h, s, 0);
  }

 private:
  T* data_ = nullptr;
  Extents extents_{0, 0, 0, 0};
  Strides strides_{0, 0, 0, 0};
};

// Owning, 64-byte aligned, contiguous [B, H, S, D] storage. Elements are
// value-initialised (zero).
template <class T>
class Tensor {
 public:
  static constexpr std::size_t kAlignment = 64;

  Tensor() = default;
  // Throws attn::Error for a negative extent or an element count whose
  // bytes do not fit in 2^62 (no allocation is attempted then).
  explicit Tensor(Extents extents) : extents_(extents) {
    std::size_t n = 1;
    for (int64_t e : extents_) {
      if (e < 0) {
        throw Error("attn::Tensor: extents must be >= 0, got " + str(extents_));
      }
      if (__builtin_mul_overflow(n, static_cast<std::size_t>(e), &n) ||
          n > (std::size_t{1} << 62) / sizeof(T)) {
        throw Error("attn::Tensor: extents " + str(extents_) +
                    " hold more than 2^62 bytes");
      }
    }
    T* p = static_cast<T*>(::operator new[]((n == 0 ? 1 : n) * sizeof(T),
                                            std::align_val_t(kAlignment)));
    std::uninitialized_value_construct_n(p, n);
    data_.reset(p);
  }
  Tensor(int64_t b, int64_t h, int64_t s, int64_t d)
      : Tensor(Extents{b, h, s, d}) {}

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  const Extents& extents() const { return extents_; }
  int64_t numel() const {
    return extents_[0] * extents_[1] * extents_[2] * extents_[3];
  }

  TensorView<T> view() {
    return TensorView<T>::bhsd(data(), extents_[0], extents_[1], extents_[2],
                               extents_[3]);
  }
  TensorView<const T> view() const {
    return TensorView<const T>::bhsd(data(), extents_[0], extents_[1],
                                     extents_[2], extents_[3]);
  }
  TensorView<const T> cview() const { return view(); }

 private:
  static_assert(std::is_trivially_destructible_v<T>);
  static std::string str(const Extents& e) {
    return "[" + std::to_string(e[0]) + ", " + std::to_string(e[1]) + ", " +
           std::to_string(e[2]) + ", " + std::to_string(e[3]) + "]";
  }
  struct AlignedDelete {
    void operator()(T* p) const {
      ::operator delete[](p, std::align_val_t(kAlignment));
    }
  };
  std::unique_ptr<T[], AlignedDelete> data_;
  Extents extents_{0, 0, 0, 0};
};

}  // namespace attn

#endif  // ATTN_TENSOR_H_
