// Where a token's row lives in a paged KV cache: the one address formula
// that the cache (src/cache, which writes rows) and the kernels' paged
// source (src/kernels/kv_source.h, which reads them in place) share.
//
//   pools     K [pages, Hkv, P, D] and V [pages, Hkv, P, Dv] elements
//   tables    [sequences, table_width] page numbers; token j of a sequence
//             is in block j / P, at slot j % P of page table[j / P]
//   row       (page * Hkv + h) * P + slot: a row index into a pool (times D
//             for K, Dv for V; also the index of an int8 row's scale)
//
// A contiguous cache is the case of one page of P = max_tokens per
// sequence (table_width 1).
#ifndef ATTN_SRC_CORE_PAGE_LAYOUT_H_
#define ATTN_SRC_CORE_PAGE_LAYOUT_H_

#include <cstdint>

namespace attn::detail {

struct PageLayout {
  int64_t Hkv = 0;
  int64_t page_size = 0;    // P
  int page_shift = -1;      // log2(P) when P is a power of two, else -1
  int64_t table_width = 0;  // blocks per sequence: ceil(max_tokens / P)

  // Row index of slot `within` of page `page`, KV head h.
  int64_t row(int64_t page, int64_t h, int64_t within) const {
    return (page * Hkv + h) * page_size + within;
  }
  // Token j's block of the sequence and slot within that block's page.
  void split(int64_t j, int64_t& block, int64_t& within) const {
    if (table_width == 1) {  // contiguous: one page per sequence
      block = 0;
      within = j;
    } else if (page_shift >= 0) {
      block = j >> page_shift;
      within = j & (page_size - 1);
    } else {
      block = j / page_size;
      within = j % page_size;
    }
  }
  // Row index of token j of the sequence whose table row is `table`.
  int64_t token_row(const int32_t* table, int64_t h, int64_t j) const {
    int64_t block, within;
    split(j, block, within);
    return row(table[block], h, within);
  }
  // The table row of sequence `seq` in a [sequences, table_width] table.
  const int32_t* table_of(const int32_t* tables, int64_t seq) const {
    return tables + seq * table_width;
  }
};

}  // namespace attn::detail

#endif  // ATTN_SRC_CORE_PAGE_LAYOUT_H_
