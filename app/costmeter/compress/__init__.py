"""Model compression measured with torch: size, CPU latency and accuracy before and after."""
