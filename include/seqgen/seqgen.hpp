// seqgen: sequence generative models from the RNN to GPT. This header only includes the parts.
#pragma once

#include "seqgen/version.hpp"

#include "seqgen/core/error.hpp"
#include "seqgen/core/gradcheck.hpp"
#include "seqgen/core/init.hpp"
#include "seqgen/core/parallel.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"

#include "seqgen/layers/attention.hpp"
#include "seqgen/layers/dropout.hpp"
#include "seqgen/layers/embedding.hpp"
#include "seqgen/layers/flash_attention.hpp"
#include "seqgen/layers/gelu.hpp"
#include "seqgen/layers/gru.hpp"
#include "seqgen/layers/layernorm.hpp"
#include "seqgen/layers/linear.hpp"
#include "seqgen/layers/lstm.hpp"
#include "seqgen/layers/rnn.hpp"
#include "seqgen/layers/softmax_head.hpp"
#include "seqgen/layers/transformer_block.hpp"

#include "seqgen/models/gpt.hpp"
#include "seqgen/models/gpt2.hpp"
#include "seqgen/models/memory_estimate.hpp"
#include "seqgen/models/recurrent_lm.hpp"

#include "seqgen/optim/adam.hpp"
#include "seqgen/optim/clip.hpp"
#include "seqgen/optim/param_list.hpp"
#include "seqgen/optim/schedule.hpp"
#include "seqgen/optim/sgd.hpp"

#include "seqgen/data/bpe.hpp"
#include "seqgen/data/bpe_train.hpp"
#include "seqgen/data/dataset.hpp"
#include "seqgen/data/gpt2_vocab.hpp"
#include "seqgen/data/pretokenize.hpp"
#include "seqgen/data/tokenizer.hpp"
#include "seqgen/data/utf8.hpp"
#include "seqgen/data/utf8_stream.hpp"

#include "seqgen/io/crc32.hpp"

// Checkpoint files (io/checkpoint.hpp), models in them (models/model_io.hpp) and the trainer that
// writes them (train/trainer.hpp) use POSIX file calls (open, fsync, rename) so that a save is
// atomic and durable, and the memory budget (core/memory.hpp) reads the process's limits. On a
// platform without <unistd.h> this header leaves those out, with generate/pretrained.hpp (which
// loads models from files), and everything else here still compiles; SEQGEN_HAS_CHECKPOINTS says
// which case holds.
#if __has_include(<unistd.h>)
#define SEQGEN_HAS_CHECKPOINTS 1
#include "seqgen/io/checkpoint.hpp"
#include "seqgen/models/model_io.hpp"
#include "seqgen/train/trainer.hpp"
#include "seqgen/generate/pretrained.hpp"
#include "seqgen/io/gpt2_files.hpp"  // llm.c's and Hugging Face's GPT-2 files
#else
#define SEQGEN_HAS_CHECKPOINTS 0
#endif

#include "seqgen/generate/decoder.hpp"
#include "seqgen/generate/generate_text.hpp"
#include "seqgen/generate/sampler.hpp"
#include "seqgen/generate/stop_strings.hpp"
