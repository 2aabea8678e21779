"""Data: readers and writers of the calorimeter file layouts, TFRecords and tf.data pipelines."""
