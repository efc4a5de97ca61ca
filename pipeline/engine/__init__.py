"""vLLM in Ray actors: the actor (actor), the loop that keeps one engine fed (loop), what is known of
the engines across restarts (health), which engine-core processes an actor may kill (cores), the
model's folder and label (model), and a Pixtral backport for vLLM 0.26-0.28 (pixtral_patch)."""
