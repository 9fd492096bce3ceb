// Uses seqgen through its umbrella header: one Linear layer, forward and backward, checked
// against a hand computation, and a BPE tokenizer. Exits non-zero on a wrong answer.
#include <seqgen/seqgen.hpp>

#include <cmath>
#include <cstdio>

int main() {
  seqgen::Rng rng(42);
  seqgen::Linear<float> layer("fc", 3, 2, rng);
  seqgen::Mat<float> x(3, 1), y;
  x << 1, 2, 3;
  layer.forward(x, y);
  for (int o = 0; o < 2; ++o) {
    float expected = layer.bias.value(o, 0);
    for (int i = 0; i < 3; ++i) expected += layer.weight.value(o, i) * x(i, 0);
    if (std::abs(y(o, 0) - expected) > 1e-5f) {
      std::printf("consumer: wrong output %g, expected %g\n", y(o, 0), expected);
      return 1;
    }
  }
  try {
    seqgen::Mat<float> bad(4, 1);
    layer.forward(bad, y);
    std::printf("consumer: a wrong shape was not rejected\n");
    return 1;
  } catch (const seqgen::ShapeError&) {
  }
  // The BPE tokenizer links PCRE2 (and gpt2_vocab.hpp reads JSON with nlohmann-json): the package
  // must carry both.
  const seqgen::Tokenizer bpe = seqgen::Tokenizer::bpe(seqgen::train_bpe("the cat, the hat, the bat", {}));
  const std::vector<seqgen::Token> ids = bpe.encode("the mat");
  if (bpe.encode(" the").size() != 1 || bpe.decode(ids) != "the mat") {
    std::printf("consumer: the BPE tokenizer does not round-trip\n");
    return 1;
  }
  if (!nlohmann::json::parse("{\"a\": 1}").is_object()) return 1;
  // scripts/test.sh compares this line across the consumers: one built through pkg-config must get
  // OpenMP exactly when one built through find_package does.
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
  const char* openmp = "on";
#else
  const char* openmp = "off";
#endif
  std::printf("consumer: seqgen works (%ld parameters), OpenMP %s\n", static_cast<long>(seqgen::count_params(layer)),
              openmp);
  return 0;
}
