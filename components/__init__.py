import os

# TFX 1.16 and tf.Transform 1.16 need Keras 2 (the tf_keras package) behind tf.keras.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
