"""Operations: replay, dead letters, offsets by time, sweeps."""
