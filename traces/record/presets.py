"""Model and training presets of the recording pipeline.

"gpu": the model the issue asks for (context 8,192, GQA 8/2, head_dim 64), sized from the
measurements in the research notes (d_model 512, 8 layers, ~400K tokens/s eager bf16 on one H100 at
context 8,192 and batch 8): 2,000 steps of 8 x 8,192 tokens = 131M tokens in ~5.5 minutes.
NOT RUN in this project yet (no GPU was lent when the pipeline was written).

"cpu": a reduced stand-in trained on a 2-core CPU within ~100 minutes: the same architecture family
(RMSNorm, RoPE, SwiGLU, GQA 8/2 with head_dim 64) at d_model 256 and 4 layers; trained mostly at
context 512 and finished at context 4,096, the recording length of the committed sample.

A stage is (steps, context, batch, max_minutes). The learning-rate schedule (linear warm-up, cosine
decay to 10%) runs over the sum of the stages' steps, so a preset's schedule is fixed by its step
count, not by the machine's speed. A stage that would run past its max_minutes (a slower or busier
machine) is cut there and the cut is logged; the next stage still runs.
"""

PRESETS = {
    # The GPU-scale long-context model (issue 13): the "gpu" architecture with RoPE base 500,000,
    # trained in three stages of rising context (4K, 16K, 32K) on a fixed time budget. Its
    # schedule is by time ("schedule": "time"): the learning rate follows the fraction of the
    # summed stage minutes elapsed, so the run ends at the planned wall time on any GPU and the
    # cosine decay completes; each stage's steps are an upper bound, its minutes the binding cap.
    # Vocabulary 8,192 keeps the bf16 checkpoint (~28M parameters, ~57 MB) small enough to come
    # back from the GPU machine, so recording and analysis can run on the CPU machines.
    "gpu32k": {
        "hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1536,
        "rope_theta": 500000.0, "max_position_embeddings": 32768,
        "stages": [[100000, 4096, 32, 2.8], [100000, 16384, 8, 1.8], [100000, 32768, 4, 1.4]],
        "schedule": "time", "lr": 2e-3, "warmup": 100, "weight_decay": 0.1,
        "dtype": "bf16", "eval_ctx": 32768, "eval_tokens_per_kind": 1 << 20,
        "bpe_vocab": 8192,
    },
    "gpu": {
        "hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 1536,
        "rope_theta": 100000.0, "max_position_embeddings": 8192,
        "stages": [[2000, 8192, 8, 6.0]], "lr": 2e-3, "warmup": 100, "weight_decay": 0.1,
        "dtype": "bf16", "eval_ctx": 8192, "eval_tokens_per_kind": 1 << 20,
        "bpe_vocab": 32768,
    },
    "cpu": {
        "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 768,
        "rope_theta": 100000.0, "max_position_embeddings": 4096,
        "stages": [[2400, 1024, 4, 92], [150, 4096, 1, 16]], "lr": 2e-3, "warmup": 60,
        "weight_decay": 0.1, "dtype": "fp32", "eval_ctx": 4096, "eval_tokens_per_kind": 32768,
        "bpe_vocab": 8192,
    },
    # A few seconds: for tests and for checking that the pipeline runs end to end.
    "tiny": {
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 128,
        "rope_theta": 10000.0, "max_position_embeddings": 512,
        "stages": [[20, 128, 4, 2], [4, 512, 1, 1]], "lr": 3e-3, "warmup": 4, "weight_decay": 0.1,
        "dtype": "fp32", "eval_ctx": 512, "eval_tokens_per_kind": 2048, 
        "bpe_vocab": 1024,
    },
}
