"""What every task's bundle shares: the input tensor's metadata and the app code that prepares an image."""

from __future__ import annotations

from export.metadata import TensorInfo
from factory.training.portable.images import OFFSET, SCALE, resize_policy


def class_list(names: list[str]) -> str:
    """The first ten class names, as the card and the metadata name them."""
    return ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")


def image_input(resolution: int, io: str, resize: str) -> TensorInfo:
    """The input tensor's metadata: an RGB image of ``io`` (uint8, int8 or float32) and its normalization."""
    mean, std = -OFFSET / SCALE, 1 / SCALE
    low, high = {"uint8": (0.0, 255.0), "int8": (-128.0, 127.0),
                 "float32": ((0 - mean) / std, (255 - mean) / std)}[io]
    return TensorInfo(
        name="image",
        description=f"RGB image, {resolution}x{resolution}, {io}; {resize_policy(resize)}",
        image=(resolution, resolution), mean=(mean,), std=(std,), min=(low,), max=(high,))


TO_INPUT = {"uint8": "resize_image(image, {r}, {p!r})[None]",  # uint8 pixels, as they are
             "int8": "(resize_image(image, {r}, {p!r}).astype(np.int16) - 128).astype(np.int8)[None]",
             "float32": "((resize_image(image, {r}, {p!r}).astype(np.float32) - 128) / 128)[None]"}
KOTLIN_PIXEL = {"uint8": ("ByteBuffer.allocateDirect(size * size * 3)", "input.put((v and 0xFF).toByte())",
                           "FloatArray"),
                 "int8": ("ByteBuffer.allocateDirect(size * size * 3)", "input.put(((v and 0xFF) - 128).toByte())",
                          "ByteArray"),
                 "float32": ("ByteBuffer.allocateDirect(size * size * 3 * 4)",
                             "input.putFloat(((v and 0xFF) - 128) / 128f)", "FloatArray")}


KOTLIN_SQUARE = {  # the card's resize policy, in Android's Bitmap calls
    "crop": "val side = minOf(bitmap.width, bitmap.height)  // centre-crop to a square\n"
            "val square = Bitmap.createBitmap(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side)",
    "stretch": "val square = bitmap  // the whole image, stretched to a square by the scaling below",
    "pad": "val side = maxOf(bitmap.width, bitmap.height)  // pad to a square with black bars, the image centred\n"
           "val square = Bitmap.createBitmap(side, side, Bitmap.Config.ARGB_8888)\n"
           "Canvas(square).apply { drawColor(Color.BLACK); drawBitmap(bitmap, ((side - bitmap.width) / 2).toFloat(), "
           "((side - bitmap.height) / 2).toFloat(), null) }",
}


def kotlin_litert_input(card: dict, square: str) -> str:
    """LiteRT Kotlin up to the input buffer: the model mapped, the image made square (``square``: the card's
    policy in Bitmap calls), scaled and packed as the model's input type wants."""
    r = card["input"]["resolution"]
    allocate, put, _ = KOTLIN_PIXEL[card["io"]]
    return f"""// build.gradle: implementation("com.google.ai.edge.litert:litert:1.4.0"); model.tflite in src/main/assets
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

val file = context.assets.openFd("model.tflite")
val model = FileInputStream(file.fileDescriptor).channel
    .map(FileChannel.MapMode.READ_ONLY, file.startOffset, file.declaredLength)
val interpreter = Interpreter(model, Interpreter.Options().setNumThreads({card['device']['threads']}))
val size = {r}
{square}
val pixels = IntArray(size * size)
Bitmap.createScaledBitmap(square, size, size, true).getPixels(pixels, 0, size, 0, 0, size, size)
val input = {allocate}.order(ByteOrder.nativeOrder())
for (p in pixels) for (v in intArrayOf(p shr 16, p shr 8, p)) {put}  // R, G, B
"""
