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
#include <type_traits>

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
  explicit Tensor(Extents extents) : extents_(extents) {
    for (int64_t e : extents_) {
      if (e < 0) throw std::bad_array_new_length();
    }
    const auto n = static_cast<std::size_t>(numel());
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
