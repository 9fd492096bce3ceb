#include <seqgen/optim/adam.hpp>
#include <seqgen/optim/clip.hpp>
#include <seqgen/optim/schedule.hpp>
#include <seqgen/optim/sgd.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace test_optim {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// A matrix (decays by default) and a vector (does not), plus an optional third parameter to test
// a module whose parameter list changes.
template <typename Scalar = double>
struct TinyModule {
  Param<Scalar> weight, bias, extra;
  bool with_extra = false;

  explicit TinyModule(Index rows = 2, Index cols = 3)
      : weight("net.weight", rows, cols), bias("net.bias", cols, 1), extra("net.extra", 1, 1) {
    weight.value = random_mat<Scalar>(rows, cols, 1);
    bias.value = random_mat<Scalar>(cols, 1, 2);
  }

  template <class Visit>
  void for_each_param(Visit&& visit) {
    visit(weight);
    visit(bias);
    if (with_extra) visit(extra);
  }
};

using Flat = std::vector<double>;

// All parameter values (or gradients) in visiting order, each column-major.
Flat flat_values(TinyModule<>& m) {
  Flat out;
  m.for_each_param([&](Param<double>& p) { out.insert(out.end(), p.value.data(), p.value.data() + p.size()); });
  return out;
}
Flat flat_grads(TinyModule<>& m) {
  Flat out;
  m.for_each_param([&](Param<double>& p) { out.insert(out.end(), p.grad.data(), p.grad.data() + p.size()); });
  return out;
}
std::vector<bool> flat_decay(TinyModule<>& m) {
  std::vector<bool> out;
  m.for_each_param([&](Param<double>& p) { out.insert(out.end(), static_cast<std::size_t>(p.size()), p.decay); });
  return out;
}

// Fixed, known gradients for step t.
void set_grads(TinyModule<>& m, int t) {
  std::uint64_t k = 0;
  m.for_each_param([&](Param<double>& p) { p.grad = random_mat(p.value.rows(), p.value.cols(), 100 + 10 * t + k++); });
}

double max_abs_diff(const Flat& a, const Flat& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// torch.optim.SGD, written element by element from its documented algorithm.
Flat reference_sgd(Flat p, const std::vector<Flat>& grads, const std::vector<bool>& decay,
                   const Sgd<double>::Options& o) {
  Flat buf(p.size(), 0.0);
  for (std::size_t t = 0; t < grads.size(); ++t)
    for (std::size_t i = 0; i < p.size(); ++i) {
      double d = grads[t][i];
      if (decay[i]) d += o.weight_decay * p[i];
      if (o.momentum != 0) {
        if (t == 0)
          buf[i] = d;
        else
          buf[i] = o.momentum * buf[i] + (1 - o.dampening) * d;
        if (o.nesterov)
          d = d + o.momentum * buf[i];
        else
          d = buf[i];
      }
      p[i] = p[i] - o.lr * d;
    }
  return p;
}

// torch.optim.Adam (decoupled = false) and torch.optim.AdamW (decoupled = true), element by element.
Flat reference_adam(Flat p, const std::vector<Flat>& grads, const std::vector<bool>& decay,
                    const Adam<double>::Options& o) {
  Flat m(p.size(), 0.0), v(p.size(), 0.0);
  for (std::size_t t = 0; t < grads.size(); ++t) {
    const double step = static_cast<double>(t + 1);
    for (std::size_t i = 0; i < p.size(); ++i) {
      double g = grads[t][i];
      const double wd = decay[i] ? o.weight_decay : 0.0;
      if (o.decoupled)
        p[i] = p[i] * (1 - o.lr * wd);
      else
        g = g + wd * p[i];
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(o.beta1, step));
      const double v_hat = v[i] / (1 - std::pow(o.beta2, step));
      p[i] = p[i] - o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
    }
  }
  return p;
}

// Runs `opt` for 3 steps with the known gradients and compares with `reference`.
template <class Opt, class Reference>
void check_three_steps(Opt& opt, Reference reference, Index rows, Index cols) {
  TinyModule<> m(rows, cols);
  const Flat p0 = flat_values(m);
  const std::vector<bool> decay = flat_decay(m);
  std::vector<Flat> grads;
  for (int t = 0; t < 3; ++t) {
    set_grads(m, t);
    grads.push_back(flat_grads(m));
    opt.step(m);
  }
  REQUIRE(opt.steps() == 3);
  const Flat expected = reference(p0, grads, decay);
  const Flat got = flat_values(m);
  REQUIRE(max_abs_diff(got, p0) > 1e-3);  // the parameters did move
  REQUIRE(max_abs_diff(got, expected) < 1e-12);
}

// f(p) = ½ Σ a_i (p_i − c_i)² over all parameters; returns max |p − target| after `steps` steps,
// where target = c, or a c / (a + λ) on decaying parameters when l2 = λ (the L2-regularised minimum).
template <class Opt, class Schedule>
double quadratic_error(Opt& opt, const Schedule& schedule, int steps, double l2 = 0) {
  TinyModule<> m(3, 4);
  std::vector<Mat<double>> a, c;
  std::uint64_t seed = 50;
  m.for_each_param([&](Param<double>& p) {
    a.push_back(random_mat(p.value.rows(), p.value.cols(), seed++, 0.75).array() + 1.25);  // a in [0.5, 2]
    c.push_back(random_mat(p.value.rows(), p.value.cols(), seed++, 2.0));
  });
  for (int t = 0; t < steps; ++t) {
    std::size_t k = 0;
    m.for_each_param([&](Param<double>& p) {
      p.grad = a[k].array() * (p.value - c[k]).array();
      ++k;
    });
    opt.options.lr = schedule(opt.steps());
    opt.step(m);
  }
  double err = 0;
  std::size_t k = 0;
  m.for_each_param([&](Param<double>& p) {
    const double wd = p.decay ? l2 : 0.0;
    const Mat<double> target = (a[k].array() * c[k].array() / (a[k].array() + wd)).matrix();
    err = std::max(err, (p.value - target).cwiseAbs().maxCoeff());
    ++k;
  });
  return err;
}

// Copies every state tensor of `from` into `to` by name.
template <class Opt>
void copy_state(Opt& from, Opt& to) {
  std::map<std::string, Mat<double>> saved;
  from.for_each_state([&](const std::string& name, const Mat<double>& t) { saved[name] = t; });
  std::size_t loaded = 0;
  to.for_each_state([&](const std::string& name, Mat<double>& t) {
    REQUIRE(saved.count(name) == 1);
    REQUIRE(saved[name].rows() == t.rows());
    REQUIRE(saved[name].cols() == t.cols());
    t = saved[name];
    ++loaded;
  });
  REQUIRE(loaded == saved.size());
  to.set_steps(from.steps());
}

// Steps twice, restores the state into a fresh optimizer (init_state, for_each_state, set_steps),
// then steps both once more: the parameters must agree bit for bit.
template <class Opt>
void check_round_trip(const typename Opt::Options& options, Index rows, Index cols) {
  TinyModule<> a(rows, cols);
  Opt original(options);
  for (int t = 0; t < 2; ++t) {
    set_grads(a, t);
    original.step(a);
  }
  TinyModule<> b = a;
  Opt restored(options);
  restored.init_state(b);
  REQUIRE(restored.steps() == 0);
  copy_state(original, restored);
  REQUIRE(restored.steps() == 2);

  set_grads(a, 2);
  set_grads(b, 2);
  original.step(a);
  restored.step(b);
  REQUIRE(original.steps() == 3);
  REQUIRE((a.weight.value.array() == b.weight.value.array()).all());
  REQUIRE((a.bias.value.array() == b.bias.value.array()).all());
}

std::vector<std::string> state_names(Sgd<double>& opt) {
  std::vector<std::string> names;
  opt.for_each_state([&](const std::string& name, Mat<double>&) { names.push_back(name); });
  return names;
}
std::vector<std::string> state_names(Adam<double>& opt) {
  std::vector<std::string> names;
  opt.for_each_state([&](const std::string& name, Mat<double>&) { names.push_back(name); });
  return names;
}

}  // namespace

TEST_CASE("Sgd: three steps match torch.optim.SGD computed element by element", "[optim][sgd]") {
  Sgd<double>::Options plain;
  plain.lr = 0.1;
  Sgd<double>::Options momentum = plain;
  momentum.momentum = 0.9;
  Sgd<double>::Options damped = momentum;
  damped.dampening = 0.25;
  Sgd<double>::Options nesterov = momentum;
  nesterov.nesterov = true;
  Sgd<double>::Options decay = momentum;
  decay.weight_decay = 0.05;
  Sgd<double>::Options plain_decay = plain;
  plain_decay.weight_decay = 0.05;
  Sgd<double>::Options nesterov_decay = nesterov;
  nesterov_decay.weight_decay = 0.05;

  // (300, 250) has 75000 elements: the chunked, parallel path with a partial last chunk.
  for (auto [rows, cols] : {std::pair<Index, Index>{2, 3}, {300, 250}})
    for (const auto& o : {plain, momentum, damped, nesterov, decay, plain_decay, nesterov_decay}) {
      Sgd<double> opt(o);
      check_three_steps(opt, [&](const Flat& p, const std::vector<Flat>& g, const std::vector<bool>& d) {
        return reference_sgd(p, g, d, o);
      }, rows, cols);
    }
}

TEST_CASE("Adam and AdamW: three steps match torch.optim.Adam/AdamW computed element by element",
          "[optim][adam]") {
  Adam<double>::Options adam;
  adam.lr = 0.01;
  Adam<double>::Options adam_l2 = adam;
  adam_l2.weight_decay = 0.1;
  Adam<double>::Options betas = adam_l2;
  betas.beta1 = 0.8;
  betas.beta2 = 0.95;
  betas.eps = 1e-3;
  Adam<double>::Options adamw = AdamW<double>::Options();
  adamw.lr = 0.01;

  for (auto [rows, cols] : {std::pair<Index, Index>{2, 3}, {300, 250}})
    for (const auto& o : {adam, adam_l2, betas, adamw}) {
      Adam<double> opt(o);
      check_three_steps(opt, [&](const Flat& p, const std::vector<Flat>& g, const std::vector<bool>& d) {
        return reference_adam(p, g, d, o);
      }, rows, cols);
    }

  // AdamW's default is decoupled decay 0.1, and the convenience type behaves as that Adam.
  AdamW<double> w;
  REQUIRE(w.options.decoupled);
  REQUIRE(w.options.weight_decay == 0.1);
  REQUIRE(w.options.lr == 1e-3);
  check_three_steps(w, [&](const Flat& p, const std::vector<Flat>& g, const std::vector<bool>& d) {
    return reference_adam(p, g, d, w.options);
  }, 2, 3);
}

TEST_CASE("AdamW: decays the matrix but not the vector by default", "[optim][adam]") {
  // With zero gradients m = v = 0, so the only change is p = p (1 - lr λ) where decay is set.
  TinyModule<> m;
  REQUIRE(m.weight.decay);
  REQUIRE_FALSE(m.bias.decay);
  const Mat<double> w0 = m.weight.value, b0 = m.bias.value;
  AdamW<double>::Options o;
  o.lr = 0.5;
  AdamW<double> opt(o);
  opt.step(m);
  REQUIRE((m.bias.value.array() == b0.array()).all());
  REQUIRE((m.weight.value - w0 * (1 - 0.5 * 0.1)).cwiseAbs().maxCoeff() < 1e-15);

  // Turning the flag off on the matrix stops its decay.
  m.weight.decay = false;
  const Mat<double> w1 = m.weight.value;
  opt.step(m);
  REQUIRE((m.weight.value.array() == w1.array()).all());
}

TEST_CASE("Optimizers converge on a quadratic", "[optim]") {
  const ConstantLr constant_01(0.1), constant_002(0.02);
  const WarmupCosineLr cosine(0.05, 0.0, 10, 1500);

  Sgd<double>::Options plain;
  Sgd<double> sgd(plain);
  REQUIRE(quadratic_error(sgd, constant_01, 300) < 1e-4);

  Sgd<double>::Options heavy;
  heavy.momentum = 0.9;
  Sgd<double> sgd_momentum(heavy);
  REQUIRE(quadratic_error(sgd_momentum, constant_002, 400) < 1e-4);

  heavy.nesterov = true;
  heavy.weight_decay = 0.05;
  Sgd<double> sgd_nesterov(heavy);
  REQUIRE(quadratic_error(sgd_nesterov, constant_002, 400, 0.05) < 1e-4);

  Adam<double>::Options l2;
  l2.weight_decay = 0.05;
  Adam<double> adam(l2);
  REQUIRE(quadratic_error(adam, cosine, 1500, 0.05) < 1e-4);

  // Decoupled decay has no penalised objective with a closed-form minimum (its fixed point is not a
  // stationary point of f + penalty), so AdamW converges to c without decay here; its decay is
  // checked exactly above.
  AdamW<double>::Options no_decay;
  no_decay.weight_decay = 0;
  AdamW<double> adamw(no_decay);
  REQUIRE(quadratic_error(adamw, cosine, 1500) < 1e-4);
}

TEST_CASE("Optimizers: state is allocated once and keeps its storage", "[optim]") {
  TinyModule<> m;
  Adam<double> opt;
  REQUIRE(state_names(opt).empty());
  set_grads(m, 0);
  opt.step(m);
  REQUIRE(state_names(opt) ==
          std::vector<std::string>{"net.weight.exp_avg", "net.weight.exp_avg_sq", "net.bias.exp_avg", "net.bias.exp_avg_sq"});
  std::vector<const double*> before;
  opt.for_each_state([&](const std::string&, Mat<double>& t) { before.push_back(t.data()); });
  for (int t = 1; t < 4; ++t) {
    set_grads(m, t);
    opt.step(m);
  }
  std::vector<const double*> after;
  opt.for_each_state([&](const std::string&, Mat<double>& t) { after.push_back(t.data()); });
  REQUIRE(before == after);

  Sgd<double> plain;
  plain.step(m);
  REQUIRE(state_names(plain).empty());
  Sgd<double>::Options o;
  o.momentum = 0.5;
  Sgd<double> momentum(o);
  momentum.step(m);
  REQUIRE(state_names(momentum) == std::vector<std::string>{"net.weight.momentum_buffer", "net.bias.momentum_buffer"});
}

TEST_CASE("Optimizers: save, load and continue is bit-identical", "[optim]") {
  Sgd<double>::Options sgd;
  sgd.lr = 0.1;
  sgd.momentum = 0.9;
  sgd.dampening = 0.1;
  sgd.weight_decay = 0.01;
  Adam<double>::Options adam;
  adam.lr = 0.01;
  adam.weight_decay = 0.1;
  AdamW<double>::Options adamw;
  adamw.lr = 0.01;
  for (auto [rows, cols] : {std::pair<Index, Index>{2, 3}, {300, 250}}) {
    check_round_trip<Sgd<double>>(sgd, rows, cols);
    check_round_trip<Adam<double>>(adam, rows, cols);
    check_round_trip<AdamW<double>>(adamw, rows, cols);
  }
}

// Float and double optimizers given the same start and gradients stay within float rounding.
template <class OptF, class OptD>
void check_float_matches_double(OptF opt_f, OptD opt_d) {
  TinyModule<float> f;
  TinyModule<> d;
  f.weight.value = d.weight.value.cast<float>();
  f.bias.value = d.bias.value.cast<float>();
  for (int t = 0; t < 3; ++t) {
    set_grads(d, t);
    f.weight.grad = d.weight.grad.cast<float>();
    f.bias.grad = d.bias.grad.cast<float>();
    opt_f.step(f);
    opt_d.step(d);
  }
  REQUIRE((f.weight.value.cast<double>() - d.weight.value).cwiseAbs().maxCoeff() < 1e-6);
  REQUIRE((f.bias.value.cast<double>() - d.bias.value).cwiseAbs().maxCoeff() < 1e-6);
}

TEST_CASE("Optimizers: float parameters step like double ones", "[optim]") {
  AdamW<float>::Options adam_f;
  adam_f.lr = 0.01;
  AdamW<double>::Options adam_d;
  adam_d.lr = 0.01;
  check_float_matches_double(AdamW<float>(adam_f), AdamW<double>(adam_d));

  Sgd<float>::Options sgd_f;
  sgd_f.lr = 0.1;
  sgd_f.momentum = 0.9;
  sgd_f.nesterov = true;
  sgd_f.weight_decay = 0.01;
  Sgd<double>::Options sgd_d;
  sgd_d.lr = 0.1;
  sgd_d.momentum = 0.9;
  sgd_d.nesterov = true;
  sgd_d.weight_decay = 0.01;
  check_float_matches_double(Sgd<float>(sgd_f), Sgd<double>(sgd_d));
}

TEST_CASE("clip_grad_norm: global norm, clipping to max_norm, no change when under", "[optim][clip]") {
  TinyModule<> m;
  set_grads(m, 0);
  double sum = 0;
  for (double g : flat_grads(m)) sum += g * g;
  const double norm = std::sqrt(sum);
  REQUIRE(grad_norm(m) == Approx(norm).epsilon(1e-14));

  // Over: every gradient is scaled by max_norm / (norm + 1e-6).
  const Flat before = flat_grads(m);
  const double max_norm = 0.5 * norm;
  REQUIRE(clip_grad_norm(m, max_norm) == Approx(norm).epsilon(1e-14));
  const Flat after = flat_grads(m);
  const double c = max_norm / (norm + 1e-6);
  for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(after[i] == Approx(c * before[i]).epsilon(1e-14));
  REQUIRE(grad_norm(m) == Approx(max_norm).epsilon(1e-6));

  // Under: the gradients are untouched.
  const Flat again = flat_grads(m);
  REQUIRE(clip_grad_norm(m, 2 * norm) == Approx(max_norm).epsilon(1e-6));
  REQUIRE(flat_grads(m) == again);

  SEQGEN_THROWS_WITH(clip_grad_norm(m, 0.0), ConfigError, "clip_grad_norm: max_norm must be finite and > 0, got 0");
  SEQGEN_THROWS_WITH(clip_grad_norm(m, -1.0), ConfigError, "got -1");
}

TEST_CASE("clip_grad_norm: float gradients are summed in double, large ones in parallel", "[optim][clip]") {
  // (300, 250) is above the parallel threshold; the bias takes the serial path.
  TinyModule<float> m(300, 250);
  m.weight.grad = random_mat<float>(300, 250, 7);
  m.bias.grad = random_mat<float>(250, 1, 8);
  double sum = 0;
  m.for_each_param([&](Param<float>& p) {
    for (Index i = 0; i < p.size(); ++i) sum += static_cast<double>(p.grad.data()[i]) * p.grad.data()[i];
  });
  const double norm = std::sqrt(sum);
  REQUIRE(grad_norm(m) == Approx(norm).epsilon(1e-12));

  const Mat<float> w = m.weight.grad;
  REQUIRE(clip_grad_norm(m, 1.0) == Approx(norm).epsilon(1e-12));
  const float c = static_cast<float>(1.0 / (norm + 1e-6));
  REQUIRE((m.weight.grad.array() == (w * c).array()).all());
  REQUIRE(grad_norm(m) == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("Learning-rate schedules: warm-up, cosine decay and floor", "[optim][schedule]") {
  const ConstantLr constant(3e-4);
  REQUIRE(constant(0) == 3e-4);
  REQUIRE(constant(123456) == 3e-4);

  const double pi = std::acos(-1.0);
  const WarmupCosineLr s(1.0, 0.1, 10, 110);
  REQUIRE(s(0) == Approx(0.1).epsilon(1e-15));  // (0 + 1) / 10
  REQUIRE(s(4) == Approx(0.5).epsilon(1e-15));
  REQUIRE(s(9) == Approx(1.0).epsilon(1e-15));   // warm-up ends at max_lr
  REQUIRE(s(10) == Approx(1.0).epsilon(1e-15));  // cosine starts at max_lr
  REQUIRE(s(35) == Approx(0.1 + 0.5 * (1 + std::cos(pi * 0.25)) * 0.9).epsilon(1e-14));
  REQUIRE(s(60) == Approx(0.55).epsilon(1e-14));  // halfway: the mean of max and min
  REQUIRE(s(109) == Approx(0.1 + 0.5 * (1 + std::cos(pi * 0.99)) * 0.9).epsilon(1e-14));
  REQUIRE(s(110) == 0.1);
  REQUIRE(s(100000) == 0.1);

  const WarmupCosineLr no_warmup(2.0, 0.0, 0, 4);
  REQUIRE(no_warmup(0) == 2.0);
  REQUIRE(no_warmup(2) == Approx(1.0).epsilon(1e-15));
  REQUIRE(no_warmup(4) == 0.0);
  const WarmupCosineLr warmup_only(2.0, 0.5, 4, 4);
  REQUIRE(warmup_only(3) == 2.0);
  REQUIRE(warmup_only(4) == 0.5);
}

TEST_CASE("Learning-rate schedules: bad settings are clear errors", "[optim][schedule][errors]") {
  SEQGEN_THROWS_WITH(ConstantLr(-0.1), ConfigError, "ConstantLr: lr must be finite and >= 0, got -0.1");
  SEQGEN_THROWS_WITH(ConstantLr(0.1)(-1), ConfigError, "ConstantLr: step must be >= 0, got -1");
  SEQGEN_THROWS_WITH(WarmupCosineLr(-1.0, 0.0, 0, 10), ConfigError, "max_lr must be finite and >= 0, got -1");
  SEQGEN_THROWS_WITH(WarmupCosineLr(1.0, 2.0, 0, 10), ConfigError, "min_lr must be in [0, max_lr = 1], got 2");
  SEQGEN_THROWS_WITH(WarmupCosineLr(1.0, -0.5, 0, 10), ConfigError, "min_lr must be in [0, max_lr = 1], got -0.5");
  SEQGEN_THROWS_WITH(WarmupCosineLr(1.0, 0.1, -1, 10), ConfigError, "warmup_steps must be >= 0, got -1");
  SEQGEN_THROWS_WITH(WarmupCosineLr(1.0, 0.1, 20, 10), ConfigError,
                     "total_steps (10) must be >= warmup_steps (20)");
  SEQGEN_THROWS_WITH(WarmupCosineLr(1.0, 0.1, 2, 10)(-3), ConfigError, "WarmupCosineLr: step must be >= 0, got -3");
}

TEST_CASE("Optimizers: bad options are clear errors", "[optim][errors]") {
  auto sgd = [](auto change) {
    Sgd<double>::Options o;
    change(o);
    return Sgd<double>(o);
  };
  using SO = Sgd<double>::Options;
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.lr = -1; }), ConfigError, "Sgd: lr must be finite and >= 0, got -1");
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.lr = std::nan(""); }), ConfigError, "Sgd: lr must be finite");
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.momentum = -0.5; }), ConfigError,
                     "Sgd: momentum must be finite and >= 0, got -0.5");
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.dampening = 1.5; }), ConfigError, "Sgd: dampening must be in [0, 1], got 1.5");
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.weight_decay = -0.1; }), ConfigError,
                     "Sgd: weight_decay must be finite and >= 0, got -0.1");
  SEQGEN_THROWS_WITH(sgd([](SO& o) { o.nesterov = true; }), ConfigError,
                     "Sgd: nesterov requires momentum > 0 and dampening == 0, got momentum 0 and dampening 0");
  SEQGEN_THROWS_WITH(sgd([](SO& o) {
                       o.nesterov = true;
                       o.momentum = 0.9;
                       o.dampening = 0.1;
                     }),
                     ConfigError, "got momentum 0.9 and dampening 0.1");

  auto adam = [](auto change) {
    Adam<double>::Options o;
    change(o);
    return Adam<double>(o);
  };
  using AO = Adam<double>::Options;
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.lr = -0.001; }), ConfigError, "Adam: lr must be finite and >= 0, got -0.001");
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.beta1 = 1.0; }), ConfigError, "Adam: beta1 must be in [0, 1), got 1");
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.beta1 = -0.1; }), ConfigError, "Adam: beta1 must be in [0, 1), got -0.1");
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.beta2 = 1.5; }), ConfigError, "Adam: beta2 must be in [0, 1), got 1.5");
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.eps = 0; }), ConfigError, "Adam: eps must be finite and > 0, got 0");
  SEQGEN_THROWS_WITH(adam([](AO& o) { o.weight_decay = -1; }), ConfigError,
                     "Adam: weight_decay must be finite and >= 0, got -1");
  AdamW<double>::Options w;
  w.beta2 = std::nan("");
  SEQGEN_THROWS_WITH(AdamW<double>(w), ConfigError, "AdamW: beta2 must be in [0, 1), got nan");

  // Options are checked again at every step, since a schedule may have set them.
  TinyModule<> m;
  set_grads(m, 0);
  AdamW<double> opt;
  opt.options.lr = -2;
  SEQGEN_THROWS_WITH(opt.step(m), ConfigError, "AdamW: lr must be finite and >= 0, got -2");
  SEQGEN_THROWS_WITH(opt.set_steps(-1), ConfigError, "AdamW: steps must be in [0, 2^53], got -1");
  Sgd<double> plain;
  SEQGEN_THROWS_WITH(plain.set_steps(-4), ConfigError, "Sgd: steps must be in [0, 2^53], got -4");
}

TEST_CASE("Optimizers: a changed parameter list is a clear error", "[optim][errors]") {
  auto run = [](auto& opt) {
    TinyModule<> m;
    set_grads(m, 0);
    opt.step(m);
    REQUIRE(opt.steps() == 1);

    m.with_extra = true;
    m.extra.grad.setZero();
    SEQGEN_THROWS_WITH(opt.step(m), ConfigError, "the module has more parameters than the 2 it had at the first step");
    m.with_extra = false;

    m.bias.name = "net.b";
    SEQGEN_THROWS_WITH(opt.step(m), ConfigError,
                       "parameter 1 is 'net.b' (3, 1), expected 'net.bias' (3, 1) as at the first step");
    m.bias.name = "net.bias";

    m.weight.value.resize(3, 2);
    m.weight.grad.resize(3, 2);
    SEQGEN_THROWS_WITH(opt.step(m), ConfigError,
                       "parameter 0 is 'net.weight' (3, 2), expected 'net.weight' (2, 3) as at the first step");
    m.weight.value.resize(2, 3);

    m.weight.grad.resize(0, 0);
    SEQGEN_THROWS_WITH(opt.step(m), ShapeError, "gradient of 'net.weight' is (0, 0), expected (2, 3)");
    REQUIRE(opt.steps() == 1);  // nothing stepped
  };
  Sgd<double>::Options o;
  o.momentum = 0.9;
  Sgd<double> sgd(o);
  run(sgd);
  Adam<double> adam;
  run(adam);

  // Fewer parameters.
  TinyModule<> big, small;
  big.with_extra = true;
  set_grads(big, 0);
  Adam<double> opt;
  opt.step(big);
  set_grads(small, 0);
  SEQGEN_THROWS_WITH(opt.step(small), ConfigError, "Adam: the module has 2 parameters, expected 3 as at the first step");
}

}  // namespace test_optim
