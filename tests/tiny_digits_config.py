"""The default digits config shrunk to a few-second run, for end-to-end tests."""

from configs import default


def get_config(num_train_steps: int = 6, **overrides):
  config = default.get_config()
  config.batch_size = 16
  config.eval_batch_size = 40
  config.image_size = 8
  config.model.update(dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1))
  config.optimizer.warmup_steps = 2
  config.num_train_steps = num_train_steps
  config.log_every_steps = 2
  config.eval_every_steps = 100
  config.checkpoint_every_steps = 2
  config.update(overrides)
  return config
