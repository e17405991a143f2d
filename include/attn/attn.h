// Umbrella header: the public API of the attn::attn target (attention,
// KV cache, patterns, linear attention, backward, file readers). The layers
// and models of attn::nn are in attn/nn.h.
#ifndef ATTN_ATTN_H_
#define ATTN_ATTN_H_

#include "attn/attention.h"
#include "attn/backward.h"
#include "attn/block_mask.h"
#include "attn/error.h"
#include "attn/kv_cache.h"
#include "attn/kv_cache_type.h"
#include "attn/kv_memory.h"
#include "attn/linear.h"
#include "attn/npy.h"
#include "attn/options.h"
#include "attn/pattern.h"
#include "attn/patterns.h"
#include "attn/rope.h"
#include "attn/safetensors.h"
#include "attn/simd.h"
#include "attn/tensor.h"
#include "attn/types.h"
#include "attn/version.h"
#include "attn/workspace.h"

#endif  // ATTN_ATTN_H_
