// export: writes the model of a training checkpoint as a smaller, inference-only file (weights,
// config, tokenizer; no optimizer state), which generate and seqgen::PretrainedModel::load read.
//
//   ./export --checkpoint run.ckpt --out model.bin              # float32 weights: 1/3 of the checkpoint
//   ./export --checkpoint run.ckpt --out model.bin --float16    # half the size again
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
  std::string checkpoint, out;
  bool half = false, overwrite = false;
  CLI::App app{"Export the model of a seqgen checkpoint for inference (weights, config, tokenizer)"};
  app.add_option("--checkpoint,-m", checkpoint, "Checkpoint written by train (or an exported model)")->required();
  app.add_option("--out,-o", out, "Exported model to write")->required();
  app.add_flag("--float16", half, "Store the weights as float16 (half the size; each weight rounded to 11 bits)");
  app.add_flag("--overwrite", overwrite, "Replace an existing seqgen file at --out");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  }
  try {
    cli::require_regular_file(checkpoint, "--checkpoint");
    check<IoError>(!out.empty(), "--out is empty: give the exported model a file name");
    // The training checkpoint holds what the export drops: never replace it.
    check<IoError>(!cli::same_file(out, checkpoint), "--out '", out, "' is the --checkpoint: choose another name");
    if (cli::file_size(out) > 0) {
      check<IoError>(cli::looks_like_checkpoint(out), "--out '", out,
                     "' exists and is not a seqgen file: refusing to replace it");
      check<IoError>(overwrite, "--out '", out, "' exists: replace it with --overwrite, or choose another --out");
    }
    const std::string target = cli::output_target(out);
    CheckpointWriter::check_destination(target);
    const double in_size = cli::file_size(checkpoint);
    if (in_size > 0) require_memory(2 * in_size, "--checkpoint '" + checkpoint + "' (" + format_bytes(in_size) + ")");
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
