// Umbrella header: the whole public API of attn.
#ifndef ATTN_ATTN_H_
#define ATTN_ATTN_H_

#include "attn/attention.h"
#include "attn/backward.h"
#include "attn/block_mask.h"
#include "attn/error.h"
#include "attn/kv_cache.h"
#include "attn/kv_memory.h"
#include "attn/linear.h"
#include "attn/machine.h"
#include "attn/model.h"
#include "attn/nn.h"
#include "attn/npy.h"
#include "attn/options.h"
#include "attn/pattern.h"
#include "attn/patterns.h"
#include "attn/rope.h"
#include "attn/safetensors.h"
#include "attn/tensor.h"
#include "attn/types.h"
#include "attn/simd.h"
#include "attn/version.h"
#include "attn/workspace.h"

#endif  // ATTN_ATTN_H_
