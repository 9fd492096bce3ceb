// Every fuzz target: one file each under targets/, one line each here. Each file registers itself
// (its last line, see harness.hpp), and all_targets() lists them in the order of these lines.
// The libFuzzer program (seqgen_fuzz.cpp), the seed writer (make_corpus.cpp), the regression test
// (tests/test_fuzz_regressions.cpp) and scripts/fuzz.sh all take the list from here.
#pragma once

#include "targets/checkpoint.hpp"
#include "targets/load_gpt.hpp"
#include "targets/load_recurrent.hpp"
#include "targets/tokenizer.hpp"
#include "targets/bpe.hpp"
#include "targets/utf8.hpp"
#include "targets/dataset.hpp"
#include "targets/stop_strings.hpp"
#include "targets/generate.hpp"
#include "targets/gpt2_llmc.hpp"
#include "targets/gpt2_safetensors.hpp"
