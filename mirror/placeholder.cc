// Keeps ferry_mirror a valid library until its first sources land.
