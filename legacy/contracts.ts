// A v1 migration region as pread/pwrite on the device fd see it.
export interface LegacyRegion {
  /** Whole region: header + data section. */
  readonly size: number;
  readAt(offset: number, buf: Uint8Array): Promise<void>;
  writeAt(offset: number, data: Uint8Array): Promise<void>;
  /** VFIO_DEVICE_RESET: device_state reads 001 afterwards. */
  reset(): Promise<void>;
  close(): Promise<void>;
}
