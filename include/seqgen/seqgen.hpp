// seqgen: sequence generative models from the RNN to GPT. This header only includes the parts.
#pragma once

#include "seqgen/core/error.hpp"
#include "seqgen/core/gradcheck.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"

#include "seqgen/layers/linear.hpp"
