"""Evaluation of trained models: eval-set accuracy and adversarial robustness."""
