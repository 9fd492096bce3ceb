// export: writes the model of a training checkpoint as a smaller, inference-only file (weights,
// config, tokenizer; no optimizer state), which generate and seqgen::PretrainedModel::load read;
// or, for a GPT, as the GPT-2 files the rest of the ecosystem reads: llm.c's .bin (train_gpt2.c,
// version 3 float32 or 5 bfloat16) and Hugging Face's model.safetensors (GPT2Model's names).
//
//   ./export --checkpoint run.ckpt --out model.bin              # float32 weights: 1/3 of the checkpoint
//   ./export --checkpoint run.ckpt --out model.bin --float16    # half the size again
//   ./export --checkpoint run.ckpt --format llmc --out gpt2_ft.bin           # llm.c (add --bfloat16: version 5)
//   ./export --checkpoint run.ckpt --format safetensors --out model.safetensors
//   ./export --checkpoint gpt2_124M.bin --format safetensors --out model.safetensors   # llm.c -> HF
//
// --checkpoint may also be a GPT-2 file (llm.c or safetensors): it converts between the two, or,
// with its tokenizer (--tokenizer gpt2_tokenizer.bin, or --encoder-json + --vocab-bpe), to a
// seqgen export. Only the model is written to a GPT-2 file: the tokenizer stays GPT-2's own files.
//
// A program of its own rather than `train --export`: exporting needs neither the training text nor
// any training option, so it works on any checkpoint, at any time after the run.
//
// Exit status: 0 on success, 1 on bad input or a file that cannot be written (the reason on
// stderr), 2 when the command line does not parse.
#include "cli_common.hpp"

#include <cstdio>
#include <new>

int main(int argc, char** argv) {
  using namespace seqgen;
  std::string checkpoint, out, format = "seqgen";
  bool half = false, bfloat = false, overwrite = false;
  cli::Gpt2TokenizerFiles gpt2_tokenizer;
  Index heads = 0;
  CLI::App app{"Export the model of a seqgen checkpoint for inference (weights, config, tokenizer), or a GPT as "
               "llm.c's or Hugging Face's GPT-2 file"};
  app.add_option("--checkpoint,-m", checkpoint,
                 "Checkpoint written by train (or an exported model, or a GPT-2 file: llm.c's .bin, model.safetensors)")
      ->required();
  app.add_option("--out,-o", out, "File to write")->required();
  app.add_option("--format", format, "seqgen (an export), llmc (llm.c's gpt2 .bin) or safetensors (Hugging Face)")
      ->check(CLI::IsMember({"seqgen", "llmc", "safetensors"}));
  app.add_flag("--float16", half, "Store the weights as float16 (half the size; each weight rounded to 11 bits)");
  app.add_flag("--bfloat16", bfloat, "llmc, safetensors: store the weights as bfloat16 (llm.c's version 5)");
  app.add_flag("--overwrite", overwrite, "Replace an existing file of the same format at --out");
  cli::add_gpt2_tokenizer_options(app, gpt2_tokenizer, "--tokenizer,--llmc-tokenizer");
  cli::add_number(app, "--heads", heads, Index(0), Index(1) << 24,
                  "A safetensors input's attention heads (0: its metadata, else GPT-2's count for its width)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "export: error: %s\n", e.what());
    return cli::kExitUsage;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "export: error: %s\n", e.what());
    return cli::kExitError;
  }
  try {
    cli::require_regular_file(checkpoint, "--checkpoint");
    check<IoError>(!out.empty(), "--out is empty: give the exported model a file name");
    // The training checkpoint holds what the export drops: never replace it.
    check<IoError>(!cli::same_file(out, checkpoint), "--out '", out, "' is the --checkpoint: choose another name");
    const bool gpt2_out = format != "seqgen";
    check<ConfigError>(!(half && bfloat), "--float16 and --bfloat16: choose one");
    check<ConfigError>(!bfloat || gpt2_out, "--bfloat16 applies to --format llmc or safetensors");
    check<ConfigError>(!half || format != "llmc", "llm.c's files hold float32 or bfloat16 (--bfloat16), not float16");
    if (cli::file_size(out) > 0) {
      // Replace only a file of the format being written, and only when asked.
      const bool same_kind = gpt2_out ? looks_like_gpt2_file(out) &&
                                            (gpt2_file_format(out) == Gpt2Format::llmc) == (format == "llmc")
                                      : cli::looks_like_checkpoint(out);
      check<IoError>(same_kind, "--out '", out, "' exists and is not a ",
                     format == "seqgen" ? "seqgen" : format == "llmc" ? "llm.c" : "safetensors",
                     " file: refusing to replace it");
      check<IoError>(overwrite, "--out '", out, "' exists: replace it with --overwrite, or choose another --out");
    }
    const std::string target = cli::output_target(out);
    CheckpointWriter::check_destination(target);
    const double in_size = cli::file_size(checkpoint);
    // A seqgen file is read whole, then the model built from it; a GPT-2 file streams into a model
    // (values and gradients, float16/bfloat16 widened): cli::load_gpt2_model's bound.
    const bool gpt2_in = !cli::looks_like_checkpoint(checkpoint) && looks_like_gpt2_file(checkpoint);
    if (in_size > 0)
      require_memory((gpt2_in ? 4 : 2) * in_size, "--checkpoint '" + checkpoint + "' (" + format_bytes(in_size) + ")");
    const TensorDtype dtype = bfloat ? TensorDtype::bf16 : half ? TensorDtype::f16 : TensorDtype::f32;

    if (gpt2_in) {
      if (gpt2_out) {
        const Gpt<float> model = load_gpt2_file<float>(checkpoint, heads);
        save_gpt2_file(model, target, format == "llmc" ? Gpt2Format::llmc : Gpt2Format::safetensors, dtype);
      } else {
        const Tokenizer tok = cli::load_gpt2_tokenizer(gpt2_tokenizer, checkpoint);
        const Gpt<float> m = cli::load_gpt2_model(checkpoint, heads, tok);
        export_model(m, tok, target, half ? WeightPrecision::float16 : WeightPrecision::float32);
      }
      std::printf("export: GPT-2 from '%s' (%s): '%s' (%s, %s)\n", checkpoint.c_str(),
                  gpt2_format_name(gpt2_file_format(checkpoint)), out.c_str(), format.c_str(),
                  format_bytes(cli::file_size(target)).c_str());
      return 0;
    }
    check<ConfigError>(!gpt2_tokenizer.given() && heads == 0, "--tokenizer, --encoder-json, --vocab-bpe and --heads "
                       "apply to a GPT-2 --checkpoint file; '", checkpoint, "' is a seqgen checkpoint");
    if (gpt2_out) {
      const PretrainedModel model = PretrainedModel::load(checkpoint);
      check<ConfigError>(model.kind() == "gpt", "--format ", format, " writes GPT-2 files: '", checkpoint,
                         "' holds a ", model.kind(), " model");
      save_gpt2_file(model.get<Gpt<float>>(), target, format == "llmc" ? Gpt2Format::llmc : Gpt2Format::safetensors,
                     dtype);
      std::printf("export: gpt, %lld parameters, %s weights: '%s' (%s, %s) from '%s' (%s)\n",
                  (long long)model.num_params(), dtype_name(dtype), out.c_str(), format.c_str(),
                  format_bytes(cli::file_size(target)).c_str(), checkpoint.c_str(), format_bytes(in_size).c_str());
      return 0;
    }
    const PretrainedModel model =
        export_model(checkpoint, target, half ? WeightPrecision::float16 : WeightPrecision::float32);
    std::printf("export: %s, %lld parameters, %s weights: '%s' (%s) from '%s' (%s)\n", model.kind().c_str(),
                (long long)model.num_params(), half ? "float16" : "float32", out.c_str(),
                format_bytes(cli::file_size(target)).c_str(), checkpoint.c_str(), format_bytes(in_size).c_str());
    return 0;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "export: error: out of memory while exporting (an allocation failed)\n");
    return cli::kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "export: error: %s\n", e.what());
    return cli::kExitError;
  }
}
