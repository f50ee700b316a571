"""Device profiles: where and how a model is timed (host LiteRT interpreter, or an Android phone over adb)."""
