// attn::nn (the attn::nn CMake target): layers, models, generation and
// checkpoint loading built on attn::attn, with BLAS projections.
#ifndef ATTN_NN_H_
#define ATTN_NN_H_

#include "attn/nn/layers.h"
#include "attn/nn/model.h"

#endif  // ATTN_NN_H_
