/**
 * The protobuf wire format, for the few field types an events file needs (varint, fixed64
 * double, fixed32 float, length-delimited bytes and packed doubles).
 *
 * Written here rather than taken from a package (protobufjs, @bufbuild/protobuf): four small
 * messages need a hundred lines and no generated code, regtrain's runtime dependencies stay as
 * they are, and the tests decode what this writes with protobufjs, an independent implementation.
 */

const enum WireType {
  varint = 0,
  fixed64 = 1,
  lengthDelimited = 2,
  fixed32 = 5,
}

const textEncoder = new TextEncoder();

/**
 * Whether a field is written at its default (0, ""): proto3 leaves out a plain singular field that
 * holds its default ('implicit', as protoc's serializers do), but a oneof member must be written
 * whatever its value, since its presence says which member is set ('explicit').
 */
export type Presence = 'implicit' | 'explicit';

/** Appends fields to a growing buffer; `finish()` returns the encoded message. */
export class ProtoWriter {
  private bytes = new Uint8Array(64);
  private view = new DataView(this.bytes.buffer);
  private length = 0;

  double(field: number, value: number, presence: Presence = 'implicit'): this {
    // +0 only, as protoc compares the bits: -0 is written
    if (presence === 'implicit' && Object.is(value, 0)) return this;
    this.tag(field, WireType.fixed64);
    this.reserve(8);
    this.view.setFloat64(this.length, value, true);
    this.length += 8;
    return this;
  }

  /** A proto `float`: the value rounded to float32, as a typed field would hold it. */
  float(field: number, value: number, presence: Presence = 'implicit'): this {
    if (presence === 'implicit' && Object.is(value, 0)) return this;
    this.tag(field, WireType.fixed32);
    this.reserve(4);
    this.view.setFloat32(this.length, value, true);
    this.length += 4;
    return this;
  }

  /** int64 (and enums): negative numbers take ten bytes, as two's complement. */
  int64(field: number, value: number, presence: Presence = 'implicit'): this {
    if (!Number.isSafeInteger(value)) throw new RangeError(`protobuf field ${field}: ${value} is not an integer`);
    if (presence === 'implicit' && value === 0) return this;
    this.tag(field, WireType.varint);
    if (value >= 0) this.varint(value);
    else this.negativeVarint(value);
    return this;
  }

  string(field: number, value: string, presence: Presence = 'implicit'): this {
    return this.bytesField(field, textEncoder.encode(value), presence);
  }

  /** A length-delimited field: raw bytes or an already encoded message (messages are always 'explicit'). */
  bytesField(field: number, value: Uint8Array, presence: Presence = 'implicit'): this {
    if (presence === 'implicit' && value.length === 0) return this;
    this.tag(field, WireType.lengthDelimited);
    this.varint(value.length);
    this.reserve(value.length);
    this.bytes.set(value, this.length);
    this.length += value.length;
    return this;
  }

  /** `repeated double … [packed = true]`: one length-delimited run of little-endian doubles. */
  packedDoubles(field: number, values: ArrayLike<number>): this {
    if (values.length === 0) return this;
    this.tag(field, WireType.lengthDelimited);
    this.varint(values.length * 8);
    this.reserve(values.length * 8);
    for (let i = 0; i < values.length; i++, this.length += 8) this.view.setFloat64(this.length, values[i], true);
    return this;
  }

  finish(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }

  private tag(field: number, wireType: WireType): void {
    this.varint(field * 8 + wireType);
  }

  /** A non-negative integer up to 2^53, seven bits a byte, low bits first. */
  private varint(value: number): void {
    this.reserve(10);
    while (value >= 0x80) {
      this.bytes[this.length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.bytes[this.length++] = value;
  }

  private negativeVarint(value: number): void {
    this.reserve(10);
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.bytes[this.length++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.bytes[this.length++] = Number(v);
  }

  private reserve(extra: number): void {
    if (this.length + extra <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + extra));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }
}
