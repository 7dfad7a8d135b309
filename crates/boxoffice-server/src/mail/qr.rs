//! A ticket code's QR code as a PNG, for e-mail (mail clients show inline images, not
//! the SVG the confirmation page uses). The same `qrcode` encoding as the page; the
//! module matrix is drawn here as a 1-bit grayscale image and encoded by `png`.

/// Pixels per QR module.
const SCALE: usize = 8;
/// Light modules around the code, as the QR standard asks for (4).
const QUIET_ZONE: usize = 4;

/// The PNG of `text`'s QR code: black on white, 8 pixels per module, with the quiet zone.
pub fn png(text: &str) -> Result<Vec<u8>, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|err| format!("QR code of {text:?}: {err}"))?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET_ZONE) * SCALE;
    // 1 bit per pixel, rows padded to whole bytes; 1 is white, 0 is black.
    let row_bytes = side.div_ceil(8);
    let mut pixels = vec![0xFFu8; row_bytes * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != qrcode::Color::Dark {
            continue;
        }
        let (module_x, module_y) = (index % modules, index / modules);
        for y in 0..SCALE {
            let row = (QUIET_ZONE + module_y) * SCALE + y;
            for x in 0..SCALE {
                let column = (QUIET_ZONE + module_x) * SCALE + x;
                pixels[row * row_bytes + column / 8] &= !(0x80 >> (column % 8));
            }
        }
    }
    let side = u32::try_from(side).map_err(|_| "QR code too large".to_owned())?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let mut writer = encoder.write_header().map_err(|err| err.to_string())?;
    writer.write_image_data(&pixels).map_err(|err| err.to_string())?;
    writer.finish().map_err(|err| err.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_ticket_code_becomes_a_black_and_white_png_with_a_quiet_zone() {
        let code = "tkt_0123456789abcdef0123456789abcdef";
        let bytes = png(code).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut buffer).unwrap();
        let qr = qrcode::QrCode::new(code.as_bytes()).unwrap();
        let side = (qr.width() + 2 * QUIET_ZONE) * SCALE;
        assert_eq!((frame.width as usize, frame.height as usize), (side, side));
        assert_eq!(frame.bit_depth, png::BitDepth::One);
        let pixel = |x: usize, y: usize| {
            let byte = buffer[y * frame.line_size + x / 8];
            byte & (0x80 >> (x % 8)) == 0
        };
        // Every module's pixels match the code's matrix; the quiet zone is white.
        let colors = qr.to_colors();
        for y in 0..side {
            for x in 0..side {
                let (mx, my) = (x / SCALE, y / SCALE);
                let inside = (QUIET_ZONE..QUIET_ZONE + qr.width()).contains(&mx)
                    && (QUIET_ZONE..QUIET_ZONE + qr.width()).contains(&my);
                let dark = inside && colors[(my - QUIET_ZONE) * qr.width() + (mx - QUIET_ZONE)] == qrcode::Color::Dark;
                assert_eq!(pixel(x, y), dark, "pixel {x},{y}");
            }
        }
    }
}
